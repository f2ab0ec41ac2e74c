"""16-bit activations beyond TIDL: onnx (int16/uint16 Q/DQ at opset 21) and tflite (16x8), built and verified on digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from qconvert.errors import ConstraintError

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "samples" / "digits"


def _recipe(tmp_path: Path, mode: str) -> Path:
    text = (DIGITS / "recipe.yaml").read_text()
    wide = text.replace("activations:\n  bits: 8\n  mode: asym_u", f"activations:\n  bits: 16\n  mode: {mode}")
    assert wide != text
    (tmp_path / "recipe.yaml").write_text(wide.replace("on_unsupported: adapt", "on_unsupported: error"))
    return tmp_path / "recipe.yaml"


def _build(tmp_path: Path, mode: str, target: str) -> dict:  # type: ignore[type-arg]
    from qconvert.pipeline import BuildRequest, build
    from qconvert.targets.registry import TargetRegistry

    req = BuildRequest(model=f"{DIGITS / 'model.py'}:build", recipe=_recipe(tmp_path, mode), calib_data=DIGITS / "calib.npz",
                       out=tmp_path / "OUT", targets=(target,), weights=DIGITS / "weights.pt", eval_data=DIGITS / "eval.npz", latency=False)
    result = build(req, TargetRegistry())
    assert not result.gate_failures, result.gate_failures
    return json.loads((tmp_path / "OUT" / "report.json").read_text())


def _float_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    from qconvert.io.model import load_model

    model = load_model(f"{DIGITS / 'model.py'}:build", str(DIGITS / "weights.pt"))
    with torch.no_grad():
        return 100.0 * float(np.mean(model(torch.from_numpy(x)).argmax(1).numpy() == y))


def test_onnx_uint16_activations_opset_21_run_in_onnxruntime(tmp_path: Path) -> None:
    import onnxruntime as ort

    report = _build(tmp_path, "asym_u", "onnx")
    path = tmp_path / "OUT" / "onnx" / "model.onnx"
    model = onnx.load(path)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 21
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    quantizers = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quantizers and {values[n.input[2]].dtype for n in quantizers} == {np.dtype(np.uint16)}
    z = np.load(DIGITS / "eval.npz")
    (out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": z["x"]})
    acc = 100.0 * float(np.mean(out.argmax(1) == z["y"]))
    assert acc == pytest.approx(report["targets"]["onnx"]["accuracy"]) and _float_accuracy(z["x"], z["y"]) - acc <= 0.5
    t = json.loads((tmp_path / "OUT" / "report.json").read_text())["targets"]["onnx"]
    assert t["vs_simulation"]["max_lsb_error"] <= t["tolerance_lsb"] == 4.0 and any("opset 21" in n for n in t["notes"])


def test_tflite_16x8_builds_and_verifies(tmp_path: Path) -> None:
    from qconvert_tflite import TFLiteTarget

    if not TFLiteTarget().available().ok:
        pytest.skip(TFLiteTarget().available().reason)
    from ai_edge_litert.interpreter import Interpreter

    report = _build(tmp_path, "sym", "tflite")
    it = Interpreter(model_path=str(tmp_path / "OUT" / "tflite" / "model.tflite"))
    it.allocate_tensors()
    details = it.get_tensor_details()
    inp = it.get_input_details()[0]
    assert inp["dtype"] == np.int16 and inp["quantization"][1] == 0
    assert not [d for d in details if d["dtype"] == np.float32]
    assert len([d for d in details if d["dtype"] == np.int64]) == 6  # a bias per conv/fully connected
    assert {d["dtype"] for d in details if len(d["shape"]) in (2, 4) and len(d["quantization_parameters"]["scales"]) > 1} == {np.int8}
    z = np.load(DIGITS / "eval.npz")
    preds = []
    si, zi = inp["quantization"]
    for x in z["x"][:100]:
        it.set_tensor(inp["index"], np.clip(np.round(x[None] / si) + zi, -32768, 32767).astype(np.int16))
        it.invoke()
        preds.append(int(np.argmax(it.get_tensor(it.get_output_details()[0]["index"]))))
    assert float(np.mean(np.array(preds) == z["y"][:100])) >= 0.97
    t = report["targets"]["tflite"]
    assert t["executed"] and t["vs_simulation"]["max_lsb_error"] <= t["tolerance_lsb"] == 8.0


def test_tensorrt_refuses_16_bit_with_its_rule(tmp_path: Path) -> None:
    from qconvert_tensorrt.constraints import TensorRTConstraints

    from qconvert.core.capture import capture
    from qconvert.core.quantize import calibrate, quantize
    from qconvert.io.model import load_model
    from qconvert.recipe import load_recipe

    recipe = load_recipe(_recipe(tmp_path, "sym"))
    model = load_model(f"{DIGITS / 'model.py'}:build", str(DIGITS / "weights.pt"))
    x = torch.from_numpy(np.load(DIGITS / "calib.npz")["x"][:32])
    captured = capture(model, (x,))
    stats = calibrate(captured, recipe, [(x,)])
    with pytest.raises(ConstraintError,
                       match=r"target .tensorrt.: .*TensorRT.s Q/DQ carries int8 only .*: activation bits must be 8, not 16"):
        quantize(captured, recipe, stats, TensorRTConstraints(), "tensorrt")
