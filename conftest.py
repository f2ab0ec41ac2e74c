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


@pytest.fixture(scope="session")
def edge_build(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real CLI build of the digits sample with `--target tflite --target tvm` (those whose
    runtime works here), shared by both plugins' tests; each skips when its target is absent."""
    from click.testing import CliRunner

    from qconvert.cli import main
    from qconvert.targets.registry import TargetRegistry

    registry = TargetRegistry()
    targets = [n for n in ("tflite", "tvm") if n in registry.names() and registry.get(n).available().ok]
    if not targets:
        pytest.skip("neither the tflite nor the tvm target is installed: pip install -e plugins/tflite -e plugins/tvm")
    out = tmp_path_factory.mktemp("edge") / "OUT"
    result = CliRunner().invoke(main, digits_build_args(digits, out, *targets))
    assert result.exit_code == 0, result.output
    return out
