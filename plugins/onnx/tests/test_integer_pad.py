"""TF-style "same" padding between quantized tensors runs on the integers in onnxruntime, with the
same outputs as the plain export and per-layer parity intact. Real onnxruntime runs throughout."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from qconvert_onnx import OnnxTarget
from qconvert_onnx.details import OnnxDetails
from qconvert_onnx.export import export_onnx_model
from qconvert_onnx.options import OnnxOptions
from torch import nn

from qconvert.pipeline import BuildRequest, build
from qconvert.targets.registry import TargetRegistry


class SamePadNet(nn.Module):
    """EfficientNet-Lite's stride-2 blocks: ZeroPad2d((0, 1, 0, 1)) before each strided conv, a depthwise one among them."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6())
        self.down = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(8, 8, 3, stride=2, groups=8), nn.ReLU6())
        self.project = nn.Conv2d(8, 16, 1)
        self.down2 = nn.Sequential(nn.ZeroPad2d((1, 1, 1, 1)), nn.Conv2d(16, 16, 3, stride=2))
        self.fc = nn.Linear(16 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down2(self.project(self.down(self.stem(x))))
        return self.fc(torch.flatten(y, 1))


def same_pad_net() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return SamePadNet().eval()


def _build_same_pad(d: Path, activations: str, samples: int, seed: int) -> None:
    """The onnx build of SamePadNet into ``d / "out"``, calibrated on ``d / "calib.npz"`` and verified on ``d / "eval.npz"``."""
    rng = np.random.default_rng(seed)
    for split in ("calib", "eval"):
        np.savez(d / f"{split}.npz", x=rng.standard_normal((samples, 3, 16, 16), dtype=np.float32))
    (d / "recipe.yaml").write_text(f"version: 1\nactivations: {activations}\ncalibration: {{num_samples: {samples}}}\n")
    registry = TargetRegistry(autoload=False)
    registry.register(OnnxTarget())
    req = BuildRequest(model=f"{__name__}:same_pad_net", recipe=d / "recipe.yaml", calib_data=d / "calib.npz",
                       out=d / "out", targets=("onnx",), eval_data=d / "eval.npz", latency=False)
    result = build(req, registry)
    assert not result.gate_failures, result.gate_failures


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("samepad")
    _build_same_pad(d, "{mode: asym_u}", 64, 0)
    return d


def _optimized(path: Path, tmp: Path) -> onnx.GraphProto:
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp / "optimized.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return onnx.load(tmp / "optimized.onnx").graph


def test_pads_run_on_integers_in_onnxruntime(built: Path, tmp_path: Path) -> None:
    path = built / "out" / "onnx" / "model.onnx"
    manifest = (built / "out" / "onnx" / "manifest.json").read_text()
    assert '"pads_on_integers": 2' in manifest
    graph = _optimized(path, tmp_path)
    producer = {o: n.op_type for n in graph.node for o in n.output}
    pads = [n for n in graph.node if n.op_type == "Pad"]
    assert len(pads) == 2 and all(producer.get(p.input[0]) != "DequantizeLinear" for p in pads)
    outputs = {o.name for o in graph.output}  # the whole chain stays integer: only the logits are dequantized
    assert [n.output[0] in outputs for n in graph.node if n.op_type == "DequantizeLinear"] == [True]


def test_outputs_equal_the_plain_export_and_parity_holds_per_layer(built: Path) -> None:
    """The plain export (DequantizeLinear -> Pad -> QuantizeLinear, padded in float) is the reference."""
    import json

    from qconvert_onnx.intermediates import run_with_intermediates

    from qconvert.core.capture import capture
    from qconvert.core.quantize import calibrate, quantize
    from qconvert.recipe import load_recipe

    x = np.load(built / "eval.npz")["x"]
    path = built / "out" / "onnx" / "model.onnx"
    (ours,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    recipe = load_recipe(built / "recipe.yaml")
    calib = torch.from_numpy(np.load(built / "calib.npz")["x"])
    cap = capture(same_pad_net(), (calib[:2],))
    target = OnnxTarget()
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(calib,)]), target.constraints(OnnxOptions()), "onnx",
                  target.placement(OnnxOptions()))
    plain = export_onnx_model(qm)
    assert sum(n.op_type == "Pad" for n in plain.graph.node) == 2
    (reference,) = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(ours, reference)
    mapping = OnnxDetails.model_validate(json.loads((built / "out" / "onnx" / "manifest.json").read_text())["artifact"]["details"])
    found = run_with_intermediates(path, {"x": x}, mapping.quantized_tensors)
    assert found.missing == () and len(found.tensors) == len(mapping.quantized_tensors)
    report = json.loads((built / "out" / "report.json").read_text())
    layers = report["targets"]["onnx"]["layer_parity"]["layers"]
    assert layers and all(r["status"] == "ok" and r["max_steps"] <= 1.0 for r in layers)


def test_a_constant_off_the_grid_keeps_the_float_pad() -> None:
    from onnx import TensorProto, helper, numpy_helper
    from qconvert_onnx.integer_pad import pad_on_integers

    def graph(fill: float) -> onnx.ModelProto:
        inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(3, np.uint8), "z"),
                 numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
                 numpy_helper.from_array(np.array(fill, np.float32), "c")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
                 helper.make_node("Pad", ["d", "pads", "c"], ["p"], mode="constant"),
                 helper.make_node("QuantizeLinear", ["p", "s", "z"], ["y"])]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])

    x = np.array([[[[0.0, 0.3], [-0.2, 5.0]]]], np.float32)
    for fill, folded in ((0.05, 0), (0.2, 1)):  # 0.05 is half a step: off the grid; 0.2 is two steps
        model = graph(fill)
        (before,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
        assert pad_on_integers(model) == folded
        (after,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
        np.testing.assert_array_equal(after, before)
        if folded:
            assert [n.op_type for n in model.graph.node] == ["QuantizeLinear", "Pad"]


def test_sixteen_bit_pads_stay_float_and_the_model_runs(tmp_path: Path) -> None:
    """onnxruntime has no int16 Pad kernel: a 16-bit build keeps DequantizeLinear -> Pad -> QuantizeLinear and loads."""
    _build_same_pad(tmp_path, "{bits: 16, mode: sym}", 32, 1)
    model = onnx.load(tmp_path / "out" / "onnx" / "model.onnx")
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    assert len(pads) == 2 and all(producer[p.input[0]] == "DequantizeLinear" for p in pads)
    (out,) = ort.InferenceSession(str(tmp_path / "out" / "onnx" / "model.onnx"),
                                  providers=["CPUExecutionProvider"]).run(None, {"x": np.load(tmp_path / "calib.npz")["x"]})
    assert out.shape == (32, 5) and np.isfinite(out).all()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

