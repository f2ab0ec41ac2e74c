"""Weight-only and activation-only static schemes (recipe quantize_only, or weights/activations: null)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from qconvert.cli import main
from qconvert.errors import RecipeError
from qconvert.recipe import recipe_from_text

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "samples" / "digits"


def test_null_scheme_is_quantize_only() -> None:
    assert recipe_from_text("activations: null\n").quantize_only == "weights"
    assert recipe_from_text("weights: null\n").quantize_only == "activations"
    with pytest.raises(RecipeError, match="cannot both be null"):
        recipe_from_text("weights: null\nactivations: null\n")
    with pytest.raises(RecipeError, match="contradicts"):
        recipe_from_text("activations: null\nquantize_only: activations\n")


def _args(tmp_path: Path, only: str, target: str) -> list[str]:
    recipe = tmp_path / "recipe.yaml"
    null = "activations" if only == "weights" else "weights"
    recipe.write_text((DIGITS / "recipe.yaml").read_text().split("weights:")[0] + f"{null}: null\n"
                      "calibration: {num_samples: 256, batch_size: 64}\nno_clip: [fc]\n")
    return ["build", "--model", f"{DIGITS / 'model.py'}:build", "--weights", str(DIGITS / "weights.pt"), "--recipe", str(recipe),
            "--calib-data", str(DIGITS / "calib.npz"), "--eval-data", str(DIGITS / "eval.npz"), "--no-latency",
            "--out", str(tmp_path / "OUT"), "--target", target]


def test_onnx_weight_only_dequantizes_weights_only_and_matches_its_simulation(tmp_path: Path) -> None:
    import onnxruntime as ort

    r = CliRunner().invoke(main, _args(tmp_path, "weights", "onnx"))
    assert r.exit_code == 0, r.output
    path = tmp_path / "OUT" / "onnx" / "model.onnx"
    model = onnx.load(path)
    inits = {i.name: i for i in model.graph.initializer}
    consts = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert not [n for n in model.graph.node if n.op_type == "QuantizeLinear"]  # activations stay float
    assert len(dq) == 6 and all(n.input[0] in inits or n.input[0] in consts for n in dq)  # 5 convs + fc, weights only
    assert all(inits[n.input[0]].data_type == onnx.TensorProto.INT8 for n in dq if n.input[0] in inits)
    # within one output step of the simulation (the step the output would have as an 8-bit activation)
    report = json.loads((tmp_path / "OUT" / "report.json").read_text())["targets"]["onnx"]
    assert report["vs_simulation"]["max_lsb_error"] <= 1.0
    z = np.load(DIGITS / "eval.npz")
    (out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": z["x"]})
    from qconvert.io.model import load_model

    with torch.no_grad():
        ref = load_model(f"{DIGITS / 'model.py'}:build", str(DIGITS / "weights.pt"))(torch.from_numpy(z["x"])).numpy()
    assert float(np.mean(out.argmax(1) == ref.argmax(1))) >= 0.98


@pytest.mark.slow
def test_pytorch_weight_only_and_activation_only_run(tmp_path: Path) -> None:
    for only in ("weights", "activations"):
        d = tmp_path / only
        d.mkdir()
        r = CliRunner().invoke(main, _args(d, only, "pytorch"))
        assert r.exit_code == 0, r.output
        t = json.loads((d / "OUT" / "report.json").read_text())["targets"]["pytorch"]
        assert t["executed"] and t["vs_simulation"]["max_lsb_error"] <= t["tolerance_lsb"] + 1e-3  # the gate's slack


@pytest.mark.parametrize(("only", "target", "why"), [
    ("activations", "onnx", "onnxruntime quantizes the float weight"),
    ("activations", "tflite", "did not load in LiteRT"),
    ("weights", "tidl", "TIDL quantizes weights and feature maps together"),
])
def test_targets_that_cannot_run_it_refuse_in_one_line(tmp_path: Path, only: str, target: str, why: str) -> None:
    r = CliRunner().invoke(main, _args(tmp_path, only, target))
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert "\n" not in line and f"target '{target}': {only}-only quantization" in line and why in line
    assert not (tmp_path / "OUT").exists()


@pytest.mark.slow
def test_tflite_weight_only_keeps_int8_weights_behind_dequantize(tmp_path: Path) -> None:
    from qconvert_tflite import TFLiteTarget

    if not TFLiteTarget().available().ok:
        pytest.skip(TFLiteTarget().available().reason)
    r = CliRunner().invoke(main, _args(tmp_path, "weights", "tflite"))
    assert r.exit_code == 0, r.output
    t = json.loads((tmp_path / "OUT" / "report.json").read_text())["targets"]["tflite"]
    assert t["executed"] and t["vs_simulation"]["max_lsb_error"] <= 1.0
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tmp_path / "OUT" / "tflite" / "model.tflite"))
    it.allocate_tensors()
    int8_weights = [d for d in it.get_tensor_details() if d["dtype"] == np.int8 and len(d["quantization_parameters"]["scales"]) > 1]
    assert len(int8_weights) >= 5 and it.get_input_details()[0]["dtype"] == np.float32
