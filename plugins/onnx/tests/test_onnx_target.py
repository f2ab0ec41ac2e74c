"""The onnx target on the digits sample: real onnxruntime runs, independent parity checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from qconvert_onnx import OnnxTarget
from qconvert_onnx.details import OnnxDetails
from qconvert_onnx.export import export_onnx_model, weight_dequantize_count
from qconvert_onnx.options import OnnxOptions

from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.io.model import load_model
from qconvert.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[3]
DIGITS = ROOT / "samples" / "digits"


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_artifact_runs_at_batch_1_and_64(onnx_build: Path) -> None:
    sess = _session(onnx_build / "onnx" / "model.onnx")
    x = np.load(DIGITS / "eval.npz")["x"]
    for n in (1, 64):
        (out,) = sess.run(None, {"x": x[:n]})
        assert out.shape == (n, 10)


def test_model_is_checker_clean_qdq_with_dynamic_batch(onnx_build: Path) -> None:
    model = onnx.load(onnx_build / "onnx" / "model.onnx")
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    # 5 convs + 1 linear: each has an int8 weight and an int32 bias behind a DequantizeLinear.
    assert weight_dequantize_count(model) == 12
    assert ops.count("QuantizeLinear") >= 6
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value
    int8_weights = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 2]
    assert len(int8_weights) == 6


def test_accuracy_within_half_a_point_of_float(onnx_build: Path) -> None:
    report = json.loads((onnx_build / "report.json").read_text())
    z = np.load(DIGITS / "eval.npz")
    sess = _session(onnx_build / "onnx" / "model.onnx")
    (out,) = sess.run(None, {"x": z["x"]})
    int8_acc = 100.0 * float(np.mean(out.argmax(1) == z["y"]))
    model = load_model(f"{DIGITS / 'model.py'}:build", str(DIGITS / "weights.pt"))
    with torch.no_grad():
        float_acc = 100.0 * float(np.mean(model(torch.from_numpy(z["x"])).argmax(1).numpy() == z["y"]))
    assert float_acc - int8_acc <= 0.5
    assert report["targets"]["onnx"]["accuracy"] == pytest.approx(int8_acc)
    assert report["float"]["accuracy"] == pytest.approx(float_acc)


def test_onnxruntime_within_one_output_step_of_simulation_on_every_sample() -> None:
    recipe = load_recipe(DIGITS / "recipe.yaml")
    model = load_model(f"{DIGITS / 'model.py'}:build", str(DIGITS / "weights.pt"))
    calib = torch.from_numpy(np.load(DIGITS / "calib.npz")["x"])
    x = np.load(DIGITS / "eval.npz")["x"]
    cap = capture(model, (calib[:2],))
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(calib[i : i + 64],) for i in range(0, 256, 64)]), target="onnx")
    proto = export_onnx_model(qm)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"x": x})
    with torch.no_grad():
        sim = qm.graph(torch.from_numpy(x)).numpy()
    (scale,) = qm.output_scales()
    assert scale is not None
    steps = np.abs(out - sim) / scale
    assert steps.max() <= 1.0 + 1e-3
    # and both are on the output grid: onnxruntime really ran a quantized output
    assert np.allclose(np.round(out / scale), out / scale, atol=1e-3)


def test_reference_evaluator_agrees_with_onnxruntime(onnx_build: Path) -> None:
    """onnx's own reference evaluator is a second oracle for the exported graph."""
    from onnx.reference import ReferenceEvaluator

    path = onnx_build / "onnx" / "model.onnx"
    x = np.load(DIGITS / "eval.npz")["x"][:8]
    (ref,) = ReferenceEvaluator(str(path)).run(None, {"x": x})
    (out,) = _session(path).run(None, {"x": x})
    scale = json.loads((onnx_build / "onnx" / "manifest.json").read_text())["tolerance"]["output_scale"]
    assert np.abs(ref - out).max() <= scale + 1e-6


def test_simplify_keeps_weight_dequantize(tmp_path: Path) -> None:
    recipe = load_recipe(DIGITS / "recipe.yaml")
    model = load_model(f"{DIGITS / 'model.py'}:build", str(DIGITS / "weights.pt"))
    x = torch.from_numpy(np.load(DIGITS / "calib.npz")["x"][:64])
    cap = capture(model, (x[:2],))
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(x,)]), target="onnx")
    art = OnnxTarget().emit(qm, tmp_path, OnnxOptions(simplify=True))
    simplified = onnx.load(art.path)
    assert weight_dequantize_count(simplified) == weight_dequantize_count(export_onnx_model(qm)) == 12
    assert not any(i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 4 for i in simplified.graph.initializer)


def test_sub_8_bit_activations_saturate_like_the_simulation() -> None:
    """4-bit activations live in uint8 storage; the exported model must clip to [0, 15]."""
    from qconvert_onnx.export import narrow_ranges

    from qconvert.recipe import recipe_from_text

    recipe = recipe_from_text("activations: {bits: 4, mode: asym_u}\nweights: {bits: 4, mode: sym, granularity: per_channel}\n"
                              "calibration: {method: percentile, percentile: 99.0}\n")
    model = load_model(f"{DIGITS / 'model.py'}:build", str(DIGITS / "weights.pt"))
    calib = torch.from_numpy(np.load(DIGITS / "calib.npz")["x"])
    x = np.load(DIGITS / "eval.npz")["x"]
    cap = capture(model, (calib[:2],))
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(calib,)]), target="onnx")
    proto = export_onnx_model(qm)
    assert narrow_ranges(proto, qm) > 0
    (out,) = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with torch.no_grad():
        sim = qm.graph(torch.from_numpy(x)).numpy()
    (scale,) = qm.output_scales()
    assert np.abs(out - sim).max() / scale <= 1.0 + 1e-3


class _Excluded(torch.nn.Module):
    """conv -> [excluded conv] -> conv: the float layer sits between two quantized tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.mid, self.b = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 1), torch.nn.Conv2d(8, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, 5)
        self.fc_mid = torch.nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(self.mid(torch.relu(self.a(x))))
        return self.fc_mid(self.fc(torch.flatten(y, 1)))


def test_excluded_layers_between_quantized_ones_stay_float_in_onnxruntime(tmp_path: Path) -> None:
    """onnxruntime would quantize an excluded conv's float weights itself (WeightBiasQuantization) when it reads a
    DequantizeLinear and feeds a QuantizeLinear; the export keeps it float, as the simulation has it."""
    from qconvert_onnx.latency import count_int8_nodes

    from qconvert.recipe.model import Recipe

    torch.manual_seed(0)
    x = torch.randn(32, 3, 8, 8)
    cap = capture(_Excluded().eval(), (x[:2],))
    recipe = Recipe(exclude=("mid", "fc_mid"))
    target = OnnxTarget()
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(x,)]), target.constraints(OnnxOptions()), "onnx")
    artifact = target.emit(qm, tmp_path, OnnxOptions())
    assert OnnxDetails.of(artifact).float_layers_kept_float == 2  # both excluded layers read a DequantizeLinear
    int8, floats, float_ops = count_int8_nodes(str(artifact.path))
    assert (int8, floats) == (3, 2) and set(float_ops) <= {"Conv", "FusedConv", "Gemm", "FusedGemm", "Add"}
    with torch.no_grad():
        sim = qm.graph(x).numpy()
    out = target.run(artifact, {"x": x.numpy()})[0]
    step = qm.parity_steps()[0] or float(np.abs(sim).max() / 127)
    assert np.abs(out - sim).max() <= 1.0 * step


class _Zoo(torch.nn.Module):
    """Max pool, flatten, an SE gate (sigmoid x mul), concat, average pool, permute + LayerNorm, an excluded conv."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.Conv2d(32, 16, 1)
        self.se, self.ex = torch.nn.Linear(16, 16), torch.nn.Conv2d(16, 16, 1)
        self.ln, self.fc = torch.nn.LayerNorm(16), torch.nn.Linear(16 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        b = self.c2(a)
        b = b * torch.sigmoid(self.se(b.mean((2, 3))))[:, :, None, None]
        c = torch.nn.functional.avg_pool2d(self.ex(self.c3(torch.cat([a, b], 1))), 2)
        f = self.ln(c.permute(0, 2, 3, 1))
        return self.fc(f.reshape(f.shape[0], -1))


def test_no_quantize_dequantize_pair_survives_onnxruntime_and_parity_holds(tmp_path: Path) -> None:
    """Q/DQ only where onnxruntime fuses them: after its optimizations no QuantizeLinear feeds a DequantizeLinear
    (a pair that only adds work), and the artifact stays within one output step of the simulation."""
    from qconvert.recipe.model import Recipe

    torch.manual_seed(0)
    x = torch.randn(16, 3, 32, 32)
    cap = capture(_Zoo().eval(), (x[:2],))
    recipe = Recipe(exclude=("ex",))
    target = OnnxTarget()
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(x,)]), target.constraints(OnnxOptions()), "onnx", target.placement(OnnxOptions()))
    artifact = target.emit(qm, tmp_path, OnnxOptions())
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(artifact.path), opts, providers=["CPUExecutionProvider"])
    graph = onnx.load(tmp_path / "optimized.onnx").graph
    readers: dict[str, list[str]] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n.op_type)
    pairs = [n.name for n in graph.node if n.op_type == "QuantizeLinear" and "DequantizeLinear" in readers.get(n.output[0], [])]
    assert pairs == []
    with torch.no_grad():
        sim = qm.graph(x).numpy()
    (step,) = qm.parity_steps()
    assert step is not None and np.abs(target.run(artifact, {"x": x.numpy()})[0] - sim).max() <= 1.0 * step
