"""``--compare-precision 8,16``: one build, 8- and 16-bit activations side by side per target, each verified in its runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from qconvert.cli import main

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "samples" / "digits"


def _args(out: Path, *targets: str) -> list[str]:
    args = ["build", "--model", f"{DIGITS / 'model.py'}:build", "--weights", str(DIGITS / "weights.pt"), "--recipe",
            str(DIGITS / "recipe.yaml"),
            "--calib-data", str(DIGITS / "calib.npz"), "--eval-data", str(DIGITS / "eval.npz"), "--no-latency", "--out", str(out),
            "--compare-precision", "8,16"]
    for t in targets:
        args += ["--target", t]
    return args


def _zero_point_types(path: Path) -> set[np.dtype]:
    model = onnx.load(path)
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return {values[n.input[2]].dtype for n in model.graph.node if n.op_type == "QuantizeLinear"}


def _check(out: Path, output: str, targets: tuple[str, ...]) -> dict:  # type: ignore[type-arg]
    report = json.loads((out / "report.json").read_text())
    p = report["precision"]
    assert p["activation_bits"] == [8, 16] and set(p["targets"]) == set(targets)
    for t in targets:
        a8, a16 = p["targets"][t]
        assert (a8["activation_bits"], a16["activation_bits"]) == (8, 16)
        assert a8["artifact"] == report["targets"][t]["artifact"]  # the recipe's own build
        assert a16["artifact"].startswith("precision/a16/") and (out / a16["artifact"]).is_file()
        assert a16["executed"] and a16["parity_lsb"] <= a16["tolerance_lsb"]
        # digits' noise is mostly its 8-bit weights (both rows keep them): 16-bit activations gain ~1 dB
        assert a16["sqnr_db"] > a8["sqnr_db"] and a16["accuracy_drop_pp"] is not None
    md = (out / "report.md").read_text()
    assert "## precision comparison (activation bits)" in md and "precision comparison" in output
    return report


@pytest.mark.slow
def test_onnx_8_vs_16_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    r = CliRunner().invoke(main, _args(out, "onnx"))
    assert r.exit_code == 0, r.output
    _check(out, r.output, ("onnx",))
    assert _zero_point_types(out / "onnx" / "model.onnx") == {np.dtype(np.uint8)}
    assert _zero_point_types(out / "precision" / "a16" / "onnx" / "model.onnx") == {np.dtype(np.uint16)}


@pytest.mark.slow
def test_onnx_and_tflite_8_vs_16(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    r = CliRunner().invoke(main, _args(out, "onnx", "tflite"))
    assert r.exit_code == 0, r.output
    report = _check(out, r.output, ("onnx", "tflite"))
    assert report["precision"]["targets"]["tflite"][1]["adapted"]  # asym_u -> sym at 16 bits (the recipe says adapt)


def test_bad_widths_are_one_line_exit_2(tmp_path: Path) -> None:
    args = _args(tmp_path / "OUT", "onnx")
    args[args.index("8,16")] = "8,x"
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0 and "--compare-precision '8,x'" in r.output
