"""Fixtures shared by the core's and the plugins' tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from qconvert.testing import digits_build_args, digits_paths

ROOT = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def digits() -> dict[str, Path]:
    return digits_paths(ROOT)


@pytest.fixture(scope="session")
def onnx_build(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real CLI build of the digits sample for the onnx target, shared by tests."""
    from click.testing import CliRunner

    from qconvert.cli import main

    out = tmp_path_factory.mktemp("build") / "OUT"
    result = CliRunner().invoke(main, digits_build_args(digits, out, "onnx"))
    assert result.exit_code == 0, result.output
    return out
