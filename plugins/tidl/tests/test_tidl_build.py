"""One real CLI build of the digits sample for ``--target tidl``; every artifact checked on its own terms.

Clip models run in onnxruntime and ai-edge-litert; configs are checked against TI's
documented names and values (tidl_docs.py); TIDL itself is not run (proprietary).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import numpy_helper
from tidl_docs import LEGACY_KEYS, OSRT_OPTIONS, TVM_KWARGS, parse_import_config

from qconvert.cli import main
from qconvert.testing import digits_build_args


@pytest.fixture(scope="module")
def build(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tidl") / "OUT"
    result = CliRunner().invoke(main, digits_build_args(digits, out, "tidl"))
    assert result.exit_code == 0, result.output
    return out


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _clip_bounds(model: onnx.ModelProto) -> list[tuple[float, float]]:
    consts = {i.name: float(numpy_helper.to_array(i)) for i in model.graph.initializer if not i.dims}
    for n in model.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = float(numpy_helper.to_array(n.attribute[0].t))
    return [(consts[n.input[1]], consts[n.input[2]]) for n in model.graph.node if n.op_type == "Clip"]


def test_clip_model_runs_in_onnxruntime_and_every_range_is_a_power_of_two_grid(build: Path, digits: dict[str, Path]) -> None:
    model = onnx.load(build / "tidl" / "model_clip.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)  # a float model
    x = np.load(digits["eval"])["x"]
    for n in (1, 64):
        (out,) = _session(build / "tidl" / "model_clip.onnx").run(None, {"x": x[:n]})
        assert out.shape == (n, 10)
    bounds = _clip_bounds(model)
    assert len(bounds) >= 8  # input, every conv/relu group, add, pool, flatten, logits
    for lo, hi in bounds:
        # TIDL derives its scale from the range: signed [-128 s, 127 s] or unsigned [0, 255 s], s = 2**-n
        step = hi / 255 if lo == 0 else -lo / 128
        assert np.log2(step) == round(np.log2(step))
        assert hi == (255 if lo == 0 else 127) * step


def test_weights_are_on_a_power_of_two_grid(build: Path) -> None:
    model = onnx.load(build / "tidl" / "model_clip.onnx")
    weights = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_weight")]
    assert len(weights) == 6
    for w in weights:
        step = 2.0 ** np.floor(np.log2(np.abs(w).max() / 127)) if w.ndim == 2 or w.shape[1] > 1 else None
        if step is not None:  # per-tensor weights: every value an integer multiple of one power-of-two step
            units = w / step
            assert np.all(units == np.round(units)) or np.all((w * 2 / step) == np.round(w * 2 / step))


def test_batch_one_copy_and_tflite_model_run_and_agree_with_onnx(build: Path, digits: dict[str, Path]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    d = build / "tidl"
    b1 = onnx.load(d / "model_clip_b1.onnx")
    assert b1.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    x = np.load(digits["eval"])["x"][:16]
    (ref,) = _session(d / "model_clip.onnx").run(None, {"x": x})
    interp = Interpreter(model_path=str(d / "model_clip.tflite"))
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    for i in range(len(x)):
        (one,) = _session(d / "model_clip_b1.onnx").run(None, {"x": x[i : i + 1]})
        np.testing.assert_allclose(one, ref[i : i + 1], atol=1e-5)
        interp.set_tensor(inp["index"], x[i : i + 1])
        interp.invoke()
        np.testing.assert_allclose(interp.get_tensor(outp["index"]), ref[i : i + 1], atol=1e-4)


def test_import_config_has_tidl_keys_and_the_qat_settings(build: Path) -> None:
    d = build / "tidl"
    cfg = parse_import_config((d / "tidl_import_config.txt").read_text())
    assert set(cfg) <= LEGACY_KEYS
    assert cfg["modelType"] == "2" and cfg["quantizationStyle"] == "3" and cfg["calibrationOption"] == "64"
    assert cfg["numParamBits"] == "8" and cfg["numFeatureBits"] == "8"
    assert (d / cfg["inputNetFile"]).is_file()
    # no preprocess in the digits recipe: float input, no normalisation in TIDL
    assert cfg["inDataNorm"] == "0" and cfg["inElementType"] == "6"
    shape = [int(cfg[k]) for k in ("inNumChannels", "inHeight", "inWidth")]
    assert shape == [1, 16, 16]
    frames = np.fromfile(d / cfg["inData"], dtype=np.float32)
    assert frames.size == int(cfg["numFrames"]) * 256


def test_onnxrt_and_tflite_options_use_documented_names_and_values(build: Path) -> None:
    for runtime in ("onnxrt", "tflitert"):
        opts = json.loads((build / "tidl" / f"compile_options_{runtime}.json").read_text())
        assert set(opts) <= OSRT_OPTIONS
        assert opts["accuracy_level"] == 0
        assert opts["advanced_options:quantization_scale_type"] == 1
        assert opts["tensor_bits"] == 8
        assert opts["artifacts_folder"] and opts["tidl_tools_path"] == "${TIDL_TOOLS_PATH}"


def test_tvm_options_take_advanced_options_as_a_dictionary(build: Path) -> None:
    opts = json.loads((build / "tidl" / "compile_options_tvmdlr.json").read_text())
    assert set(opts) <= TVM_KWARGS
    assert opts["accuracy_level"] == 0 and opts["tensor_bits"] == 8 and opts["platform"] == "am68pa"
    assert opts["advanced_options"]["quantization_scale_type"] == 1
    assert not any(k.startswith("advanced_options:") for k in opts["advanced_options"])


@pytest.mark.parametrize("script,needles", [
    ("compile_onnxrt.py", ["TIDLCompilationProvider", "compile_options_onnxrt.json", "model_clip_b1.onnx"]),
    ("compile_tflitert.py", ["tidl_model_import_tflite.so", "compile_options_tflitert.json", "model_clip.tflite"]),
    ("compile_tvmdlr.py", ["TIDLCompiler", "compile_options_tvmdlr.json", "deploy_lib.so"]),
])
def test_compile_scripts_are_python_that_use_their_options(build: Path, script: str, needles: list[str]) -> None:
    text = (build / "tidl" / script).read_text()
    ast.parse(text)
    for needle in needles:
        assert needle in text
        if needle.endswith((".json", ".onnx", ".tflite")):
            assert (build / "tidl" / needle).is_file()


def test_report_says_the_device_was_not_run_and_the_simulation_is_exact(build: Path) -> None:
    report = json.loads((build / "report.json").read_text())
    t = report["targets"]["tidl"]
    assert t["executed"] is True  # the Clip model, in onnxruntime
    assert t["vs_simulation"]["max_lsb_error"] <= t["tolerance_lsb"]
    assert any("not run" in n for n in t["notes"])
    pred = t["checks"]["device_prediction"]
    assert pred["exactness"]["mismatches_vs_tidl_rounding_torch"] == 0
    assert pred["exactness"]["elements"] == 500 * 10
    names = [r["name"] for r in pred["rows"]]
    assert names == ["float", "simple calibration", "advanced calibration", "per-channel depthwise", "this build"]
    assert pred["rows"][0]["accuracy"] == pytest.approx(report["float"]["accuracy"])
    assert all(r["accuracy"] > 95.0 for r in pred["rows"])
    assert t["checks"]["tflite_vs_onnx_max_abs"] < 1e-4
    assert (build / "tidl" / "device_prediction.md").is_file()
    # the digits model adds in forward (residual): the lint says so, naming the top-level module
    assert any(f["rule"] == "functional_op" and f["module"] == "" for f in t["checks"]["lint"])


def test_gates_judge_the_device_prediction_and_the_report_says_so(build: Path) -> None:
    """The Clip model in onnxruntime is float between its Clips; what ships is the integer device: its figures gate."""
    from qconvert_tidl.predict import DEVICE_FIGURE

    report = json.loads((build / "report.json").read_text())
    t = report["targets"]["tidl"]
    device = t["checks"]["device_prediction"]["rows"][-1]
    assert t["device"]["accuracy"] == device["accuracy"] and t["gated_on"] == DEVICE_FIGURE
    (check,) = [c for c in report["gates"]["checks"] if c["metric"] == "accuracy_drop_pp"]
    assert check["figure"] == DEVICE_FIGURE
    assert check["value"] == pytest.approx(report["float"]["accuracy"] - device["accuracy"])
    assert device["accuracy"] != t["accuracy"]  # on digits the two differ (0.6 pp vs 0.4 pp): the gate must take the device's
    assert f"gates judged: {DEVICE_FIGURE}" in (build / "report.md").read_text()
    html = (build / "report.html").read_text()
    assert "own runtime" not in html and "TIDL itself not run" in html and DEVICE_FIGURE in html


def test_calibration_frames_follow_the_recipe_samples_in_the_declared_type(build: Path, digits: dict[str, Path]) -> None:
    cfg = parse_import_config((build / "tidl" / "tidl_import_config.txt").read_text())
    with np.load(digits["calib"]) as z:
        n = min(256, len(z["x"]))  # the sample recipe's calibration.num_samples
        x = z["x"][:n]
    assert int(cfg["numFrames"]) == n > 2
    assert cfg["inDataNorm"] == "0" and cfg["inElementType"] == "6"  # npz data: float inputs, no normalization
    frames = np.fromfile(build / "tidl" / "calib_frames.bin", dtype=np.float32).reshape(x.shape)
    assert np.array_equal(frames, x.astype(np.float32))
