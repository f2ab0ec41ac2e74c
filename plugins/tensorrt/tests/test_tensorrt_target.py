"""The tensorrt target end to end: onnxruntime runs of the emitted ONNX, the build files, the honest report."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from qconvert_tensorrt import TensorRTTarget
from qconvert_tensorrt.engine import engine_support
from qconvert_tensorrt.options import TensorRTOptions
from trt_patterns import ResidualBlock, quantize_for_tensorrt

from qconvert.errors import ConstraintError, RecipeError, TargetUnavailableError
from qconvert.io.model import load_model
from qconvert.recipe.model import QScheme, Recipe

DIGITS = Path(__file__).resolve().parents[3] / "samples" / "digits"
no_engine_here = pytest.mark.skipif(engine_support().ok, reason="TensorRT and a GPU are present: the engine path runs instead")


def _ort(model_bytes: bytes | str) -> ort.InferenceSession:
    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["resnet_identity", "resnet_downsample", "mobilenetv2", "transformer", "float_ops"])
def test_onnxruntime_matches_the_simulation(patterns: dict, name: str) -> None:
    p = patterns[name]
    (out,) = _ort(p.onnx.SerializeToString()).run(None, {"x": p.x.numpy()})
    with torch.no_grad():
        sim = p.qmodel.graph(p.x).numpy()
        ref = p.model(p.x).numpy()
    step = p.qmodel.parity_steps()[0]
    assert p.qmodel.output_scales()[0] is None and step is not None  # the output stays float
    assert np.abs(out - sim).max() / step <= TensorRTTarget.parity_tolerance_lsb
    sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((out - ref) ** 2))
    assert sqnr > 20.0, f"{name}: int8 vs float SQNR {sqnr:.1f} dB"


@no_engine_here
def test_digits_build_writes_onnx_script_trtexec_and_says_no_engine(tensorrt_build: Path) -> None:
    d = tensorrt_build / "tensorrt"
    for f in ("model.onnx", "build_engine.py", "build_config.json", "trtexec.sh", "layers.md", "layers.json", "manifest.json"):
        assert (d / f).is_file(), f
    assert not (d / "model.engine").exists()
    t = json.loads((tensorrt_build / "report.json").read_text())["targets"]["tensorrt"]
    assert t["artifact"] == "tensorrt/model.onnx"
    assert t["executed"] is True and "onnxruntime" in t["executed_in"] and "not built" in t["executed_in"]
    assert t["notes"][0].startswith("TensorRT engine NOT built: tensorrt is not installed")
    assert "TensorRT engine not built" in t["runtime"]
    engine = json.loads((d / "manifest.json").read_text())["artifact"]["details"]["engine"]
    assert engine["built"] is False and engine["reason"]
    md = (tensorrt_build / "report.md").read_text()
    assert "| tensorrt | yes, ONNX in onnxruntime, engine not built |" in md and "TensorRT engine NOT built" in md


def test_digits_accuracy_and_parity_from_the_files(tensorrt_build: Path) -> None:
    """Recomputed from model.onnx and the float model, not read back from the report."""
    z = np.load(DIGITS / "eval.npz")
    (out,) = _ort(str(tensorrt_build / "tensorrt" / "model.onnx")).run(None, {"x": z["x"]})
    model = load_model(f"{DIGITS / 'model.py'}:build", str(DIGITS / "weights.pt"))
    with torch.no_grad():
        ref = model(torch.from_numpy(z["x"])).numpy()
    int8_acc, float_acc = np.mean(out.argmax(1) == z["y"]), np.mean(ref.argmax(1) == z["y"])
    assert 100 * (float_acc - int8_acc) <= 0.5
    report = json.loads((tensorrt_build / "report.json").read_text())["targets"]["tensorrt"]
    assert report["accuracy"] == pytest.approx(100 * int8_acc)
    assert report["vs_simulation"]["max_lsb_error"] <= TensorRTTarget.parity_tolerance_lsb
    golden = tensorrt_build / "tensorrt" / "golden"
    (g,) = _ort(str(tensorrt_build / "tensorrt" / "model.onnx")).run(None, {"x": np.load(golden / "input_x.npy")})
    np.testing.assert_array_equal(g, np.load(golden / "output_output.npy"))


def test_build_config_and_trtexec_line(tensorrt_build: Path) -> None:
    d = tensorrt_build / "tensorrt"
    cfg = json.loads((d / "build_config.json").read_text())
    assert cfg["onnx"] == "model.onnx" and cfg["engine"] == "model.engine" and cfg["fp16"] is True
    assert cfg["inputs"] == [{"name": "x", "min": [1, 1, 16, 16], "opt": [8, 1, 16, 16], "max": [64, 1, 16, 16]}]
    script = (d / "trtexec.sh").read_text()
    subprocess.run(["sh", "-n", str(d / "trtexec.sh")], check=True)
    lines = [ln for ln in script.splitlines() if ln.startswith(("trtexec ", "# trtexec "))]
    trt10, trt11 = shlex.split(lines[0]), shlex.split(lines[1].lstrip("# "))
    for want in ("--onnx=model.onnx", "--saveEngine=model.engine", "--minShapes=x:1x1x16x16", "--optShapes=x:8x1x16x16",
                 "--maxShapes=x:64x1x16x16", "--timingCacheFile=timing.cache"):
        assert want in trt10 and want in trt11
    assert "--int8" in trt10 and "--fp16" in trt10 and "--stronglyTyped" not in trt10
    assert "--stronglyTyped" in trt11 and "--int8" not in trt11


@pytest.mark.skipif(engine_support().ok, reason="tensorrt is importable here")
def test_build_engine_script_fails_plainly_without_tensorrt(tensorrt_build: Path, tmp_path: Path) -> None:
    d = tmp_path / "trt"
    shutil.copytree(tensorrt_build / "tensorrt", d)
    help_run = subprocess.run([sys.executable, str(d / "build_engine.py"), "--help"], check=False, capture_output=True, text=True)
    assert help_run.returncode == 0 and "build_config.json" in help_run.stdout
    run = subprocess.run([sys.executable, str(d / "build_engine.py")], check=False, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1
    assert "tensorrt is not importable" in run.stderr and "no engine was written" in run.stderr
    assert not (d / "model.engine").exists() and not (d / "timing.cache").exists()


def test_layer_precision_summary(tensorrt_build: Path) -> None:
    rows = json.loads((tensorrt_build / "tensorrt" / "layers.json").read_text())
    by_op: dict[str, set[str]] = {}
    for r in rows:
        by_op.setdefault(r["op"], set()).add(r["precision"])
    assert by_op["Conv"] == {"int8"} and by_op["Gemm"] == {"int8"}
    assert by_op["Relu"] == {"fused"} and by_op["Add"] == {"fused"}  # conv + add + relu is one int8 layer
    assert by_op["ReduceMean"] == {"fp16"}  # the global pool has no Q/DQ: FP16 fallback
    convs = [r for r in rows if r["op"] == "Conv"]
    # every conv writes int8 for the next conv, except the last (the pool after it reads float)
    assert [r["output"] for r in convs] == ["int8"] * 4 + ["fp16"]
    assert next(r for r in rows if r["op"] == "Gemm")["output"] == "fp16"


def test_batch_profile_must_be_ordered() -> None:
    with pytest.raises(RecipeError, match="targets.tensorrt: .*need min_batch <= opt_batch <= max_batch"):
        TensorRTTarget().parse_options({"min_batch": 8, "opt_batch": 4})


def test_schemes_tensorrt_cannot_run_are_refused_or_adapted_to_symmetric_int8() -> None:
    torch.manual_seed(0)
    model, x = ResidualBlock().eval(), torch.randn(32, 8, 8, 8)
    asym4 = QScheme(bits=4, mode="asym_u")
    with pytest.raises(ConstraintError, match=r"target 'tensorrt': layer .* mode must be one of \['sym'\]"):
        quantize_for_tensorrt(model, x, Recipe(activations=asym4))
    qm = quantize_for_tensorrt(model, x, Recipe(activations=asym4, on_unsupported="adapt"))
    acts = [d for d in qm.decisions.values() if d.role == "activation"]
    assert acts and all(d.scheme.mode == "sym" and d.scheme.bits == 8 for d in acts)  # both rules fixed, not just the last


@no_engine_here
def test_engine_required_but_impossible_is_target_unavailable(patterns: dict, tmp_path: Path) -> None:
    with pytest.raises(TargetUnavailableError, match="requires an engine"):
        TensorRTTarget().emit(patterns["resnet_identity"].qmodel, tmp_path, TensorRTOptions(engine="require"))
