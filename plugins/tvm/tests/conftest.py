"""Fixtures of the tvm plugin's tests: the digits model quantized as the shared build quantized it."""

from __future__ import annotations

from pathlib import Path

import pytest

from qconvert.core.quantize import QuantizedModel, quantize
from qconvert.core.stats import StatsSet
from qconvert.session import prepare_session


@pytest.fixture(scope="session")
def tvm_build(edge_build: Path) -> Path:
    from qconvert_tvm import TvmTarget

    if not TvmTarget().available().ok:
        pytest.skip(TvmTarget().available().reason)
    assert (edge_build / "tvm").is_dir()
    return edge_build


@pytest.fixture(scope="session")
def tvm_qmodel(tvm_build: Path, digits: dict[str, Path]) -> QuantizedModel:
    """The simulation the build's library was compiled from: same statistics, same constraints."""
    from qconvert_tvm import TvmTarget

    session = prepare_session(f"{digits['model']}:build", digits["recipe"], digits["calib"], digits["weights"], None, digits["eval"])
    target = TvmTarget()
    options = target.parse_options(session.recipe.targets.get("tvm"))
    return quantize(session.captured, session.recipe, StatsSet.load(tvm_build / "stats"), target.constraints(options), target.name,
                    target.placement(options), calibration_batches=session.calibration_batches)
