"""Accuracy gates: judged in the artifact's runtime, one line per failure, exit 3 (and OUT still written)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qconvert.recipe import recipe_from_text
from qconvert.verify.gates import Measured, end_to_end_bound, evaluate, gates_for

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "samples" / "digits"


def _independent_accuracies(onnx_path: Path) -> tuple[float, float]:
    """Float accuracy in torch and artifact accuracy in onnxruntime, computed here from the files."""
    import onnxruntime as ort
    import torch

    from qconvert.io.model import load_model

    z = np.load(DIGITS / "eval.npz")
    (out,) = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"x": z["x"]})
    model = load_model(f"{DIGITS / 'model.py'}:build", str(DIGITS / "weights.pt"))
    with torch.no_grad():
        ref = model(torch.from_numpy(z["x"])).numpy()
    return 100.0 * float(np.mean(ref.argmax(1) == z["y"])), 100.0 * float(np.mean(out.argmax(1) == z["y"]))


def test_low_bit_recipe_fails_the_accuracy_gate_with_exit_3_and_one_line(tmp_path: Path) -> None:
    """The CI sample script on the digits recipe with 3-bit weights: the 1 pp gate fails."""
    recipe = (DIGITS / "recipe.yaml").read_text().replace("weights:\n  bits: 8", "weights:\n  bits: 3", 1)
    assert "bits: 3" in recipe
    (tmp_path / "recipe.yaml").write_text(recipe)
    out = tmp_path / "OUT"
    env = {**os.environ, "QCONVERT": str(Path(sys.executable).parent / "qconvert"), "RECIPE": str(tmp_path / "recipe.yaml"),
           "OUT": str(out)}
    proc = subprocess.run(["bash", str(ROOT / "samples" / "ci" / "build_and_gate.sh")], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 3, proc.stderr
    float_acc, int_acc = _independent_accuracies(out / "onnx" / "model.onnx")
    drop = float_acc - int_acc
    assert drop > 1.0
    assert proc.stderr.strip().splitlines() == [f"gate failed: onnx: accuracy drop {drop:.2f} pp > limit 1 pp"]
    report = json.loads((out / "report.json").read_text())  # the report is there for the CI upload
    assert report["gates"]["passed"] is False
    assert (out / "report.html").is_file() and (out / "report.md").is_file()


def test_sample_recipe_passes_its_gate(onnx_build: Path) -> None:
    """The shared digits build (exit 0 asserted by the fixture) checked its 1 pp gate and the parity tolerance."""
    report = json.loads((onnx_build / "report.json").read_text())
    float_acc, int_acc = _independent_accuracies(onnx_build / "onnx" / "model.onnx")
    checks = {c["metric"]: c for c in report["gates"]["checks"] if c["target"] == "onnx"}
    assert checks["accuracy_drop_pp"]["value"] == pytest.approx(float_acc - int_acc)
    assert checks["accuracy_drop_pp"]["limit"] == 1.0 and checks["accuracy_drop_pp"]["passed"]
    # per layer within the target's tolerance; end to end reported, not gated, where layers were compared
    assert checks["layer_parity_lsb"]["limit"] == 1.0 and checks["layer_parity_lsb"]["passed"]
    assert "parity_lsb" not in checks
    assert report["gates"] == {"passed": True, "failures": [], "checks": report["gates"]["checks"]}


def test_layer_parity_gates_per_layer_and_end_to_end_only_without_it() -> None:
    """Where per-layer parity was measured the tolerance applies per layer; end to end (30 steps here,
    compounding at depth) is not gated. Without it, end to end is gated as before."""
    recipe = recipe_from_text("version: 1\n")
    ok = Measured(None, 30.0, 1.0, parity_lsb=30.0, tolerance_lsb=1.0, layer_checked=True, layer_parity_lsb=1.0, depth=118,
                  outputs_covered=True)
    checks = {c.metric: c for c in evaluate(recipe.gates, "onnx", None, ok)}
    assert checks["layer_parity_lsb"].passed and checks["layer_parity_lsb"].limit == 1.0
    assert "parity_lsb" not in checks
    # a float output layer after the compared ones (TensorRT's logits): end to end at the depth's reference
    float_head = Measured(None, 30.0, 1.0, parity_lsb=9.0, tolerance_lsb=1.0, layer_checked=True, layer_parity_lsb=1.0, depth=64)
    checks = {c.metric: c for c in evaluate(recipe.gates, "trt", None, float_head)}
    assert not checks["parity_lsb"].passed and checks["parity_lsb"].limit == end_to_end_bound(1.0, 64) == 8.0
    assert end_to_end_bound(1.0, 0) == end_to_end_bound(1.0, 1) == 1.0
    bad = Measured(None, 30.0, 1.0, parity_lsb=1.0, tolerance_lsb=1.0, layer_checked=True, layer_parity_lsb=None, depth=4,
                   first_divergence="first divergence at conv2d 'b.1': missing")
    (layer,) = [c for c in evaluate(recipe.gates, "onnx", None, bad) if c.metric == "layer_parity_lsb"]
    assert not layer.passed
    assert layer.line() == "onnx: per-layer parity vs simulation: first divergence at conv2d 'b.1': missing (limit 1 LSB)"
    plain = Measured(None, 30.0, 1.0, parity_lsb=1.5, tolerance_lsb=1.0)
    assert [(c.metric, c.passed) for c in evaluate(recipe.gates, "x", None, plain)] == [("parity_lsb", False)]


def test_gate_rules() -> None:
    recipe = recipe_from_text(
        "gates: {max_accuracy_drop: 0.5, min_sqnr_db: 20, min_top1_agreement: 0.99}\n"
        "target_gates: {tflite: {max_accuracy_drop: 1.0}}\n"
    )
    g = gates_for(recipe, "tflite")
    assert (g.max_accuracy_drop, g.min_sqnr_db, g.min_top1_agreement) == (1.0, 20, 0.99)
    # 99.4 - 98.9 is 0.5000000000000142 in floating point: exactly at the limit passes
    at_limit = evaluate(recipe.gates, "onnx", 99.4, Measured(98.9, 25.0, 0.995))
    assert all(c.passed for c in at_limit) and len(at_limit) == 3
    bad = evaluate(recipe.gates, "onnx", 99.4, Measured(97.0, math.nan, 0.9, parity_lsb=1.5, tolerance_lsb=1.0))
    assert [c.line() for c in bad if not c.passed] == [
        "onnx: parity vs simulation 1.500 LSB > limit 1 LSB",
        "onnx: accuracy drop 2.40 pp > limit 0.5 pp",
        "onnx: SQNR vs float not measurable (NaN) < limit 20 dB",
        "onnx: top-1 agreement 0.9000 < limit 0.99",
    ]


def test_accuracy_gate_without_labels_is_bad_input(digits: dict[str, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from qconvert.cli import main
    from qconvert.testing import digits_build_args

    np.save(tmp_path / "unlabelled.npy", np.load(digits["eval"])["x"][:16])
    args = digits_build_args(digits, tmp_path / "OUT", "onnx")
    args[args.index("--eval-data") + 1] = str(tmp_path / "unlabelled.npy")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "gates.max_accuracy_drop needs labelled evaluation data" in result.output
    assert not (tmp_path / "OUT").exists()


def test_without_intermediates_the_end_to_end_bound_is_the_looser_measured_one() -> None:
    gates = gates_for(recipe_from_text("calibration: {method: minmax}\n"), "pytorch")
    # depth 16, tolerance 1: 2 tolerances per sqrt(depth) = 8 steps (pytorch measured 5 at depth 12 on the zoo's ResNet)
    ok = evaluate(gates, "pytorch", None, Measured(None, None, None, parity_lsb=7.5, tolerance_lsb=1.0, depth=16))
    bad = evaluate(gates, "pytorch", None, Measured(None, None, None, parity_lsb=8.5, tolerance_lsb=1.0, depth=16))
    assert [(c.metric, c.limit, c.passed) for c in ok] == [("parity_lsb", 8.0, True)]
    assert [(c.metric, c.passed) for c in bad] == [("parity_lsb", False)]
    shallow = evaluate(gates, "pytorch", None, Measured(None, None, None, parity_lsb=1.5, tolerance_lsb=1.0, depth=0))
    assert [(c.limit, c.passed) for c in shallow] == [(1.0, False)]
    assert end_to_end_bound(1.0, 16, layers_checked=False) == 2 * end_to_end_bound(1.0, 16)


def test_without_intermediates_drift_far_below_the_quantization_noise_passes() -> None:
    gates = gates_for(recipe_from_text("calibration: {method: minmax}\n"), "tvm")
    # 30 steps at depth 16 (bound 8): a high-gain net amplifying rounding drift, 20 dB from float, 35 dB from the simulation
    drift = evaluate(gates, "tvm", None, Measured(None, 20.0, None, parity_lsb=30.0, tolerance_lsb=1.0, depth=16, sim_sqnr_db=35.0))
    assert [(c.metric, c.passed) for c in drift] == [("parity_lsb", True)] and "within rounding drift" in drift[0].line()
    # the same steps with the artifact as far from the simulation as from float: a wrong scale, not drift
    wrong = evaluate(gates, "tvm", None, Measured(None, 20.0, None, parity_lsb=30.0, tolerance_lsb=1.0, depth=16, sim_sqnr_db=21.0))
    assert [(c.metric, c.passed) for c in wrong] == [("parity_lsb", False)]
