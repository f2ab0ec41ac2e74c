"""Fixtures of the tflite plugin's tests: the digits model quantized for TFLite from the shared build's statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from qconvert.core.quantize import QuantizedModel, quantize
from qconvert.core.stats import StatsSet
from qconvert.session import Session, prepare_session


def _target():
    from qconvert_tflite import TFLiteTarget

    target = TFLiteTarget()
    if not target.available().ok:
        pytest.skip(target.available().reason)
    return target


@pytest.fixture(scope="session")
def digits_session(digits: dict[str, Path]) -> Session:
    return prepare_session(f"{digits['model']}:build", digits["recipe"], digits["calib"], digits["weights"], None, digits["eval"])


@pytest.fixture(scope="session")
def tflite_build(edge_build: Path) -> Path:
    _target()
    assert (edge_build / "tflite").is_dir()
    return edge_build


@pytest.fixture(scope="session")
def tflite_qmodel(tflite_build: Path, digits_session: Session) -> QuantizedModel:
    """The simulation the build's artifact was made from: same statistics, same constraints."""
    target = _target()
    options = target.parse_options(digits_session.recipe.targets.get("tflite"))
    return quantize(digits_session.captured, digits_session.recipe, StatsSet.load(tflite_build / "stats"),
                    target.constraints(options), target.name, target.placement(options),
                    calibration_batches=digits_session.calibration_batches)
