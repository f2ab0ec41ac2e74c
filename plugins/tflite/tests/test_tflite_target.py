"""The tflite target on the digits sample: real LiteRT runs, independent parity checks.

The shared build (conftest ``edge_build``) is one `qconvert build --target tflite --target tvm`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from qconvert_tflite.details import TfliteDetails

from qconvert.core.quantize import QuantizedModel, quantize
from qconvert.core.stats import StatsSet
from qconvert.errors import ConstraintError
from qconvert.io.model import load_model
from qconvert.session import Session

ROOT = Path(__file__).resolve().parents[3]
DIGITS = ROOT / "samples" / "digits"


def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


def _simulation(qm: QuantizedModel, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return qm.graph(torch.from_numpy(x)).numpy()


def test_artifact_is_full_integer_with_per_channel_symmetric_weights(tflite_build: Path) -> None:
    """Read back by the interpreter itself: every tensor of the graph is integer, every conv/FC
    weight is int8 with one scale per output channel and zero point 0, biases are int32."""
    it = _interpreter(tflite_build / "tflite" / "model.tflite")
    details = it.get_tensor_details()
    assert not [d["name"] for d in details if d["dtype"] == np.float32]
    weights = [d for d in details if d["dtype"] == np.int8 and len(d["shape"]) in (2, 4) and d["shape"][0] in (16, 32, 10, 1)
               and len(d["quantization_parameters"]["scales"]) > 1]
    # 5 convolutions (the 1-channel stem becomes a depthwise conv) + 1 fully connected layer.
    assert len(weights) == 6
    for w in weights:
        q = w["quantization_parameters"]
        channels = w["shape"][q["quantized_dimension"]]
        assert len(q["scales"]) == channels and not np.any(q["zero_points"])
    biases = [d for d in details if d["dtype"] == np.int32 and len(d["shape"]) == 1 and len(d["quantization_parameters"]["scales"]) > 1]
    assert len(biases) == 6
    assert it.get_input_details()[0]["dtype"] == np.int8 and it.get_output_details()[0]["dtype"] == np.int8


def test_accuracy_within_half_a_point_of_float(tflite_build: Path) -> None:
    z = np.load(DIGITS / "eval.npz")
    it = _interpreter(tflite_build / "tflite" / "model.tflite")
    si, zi = it.get_input_details()[0]["quantization"]
    preds = []
    for x in z["x"]:
        it.set_tensor(it.get_input_details()[0]["index"], np.clip(np.round(x[None] / si) + zi, -128, 127).astype(np.int8))
        it.invoke()
        preds.append(int(np.argmax(it.get_tensor(it.get_output_details()[0]["index"]))))
    int8_acc = 100.0 * float(np.mean(np.array(preds) == z["y"]))
    model = load_model(f"{DIGITS / 'model.py'}:build", str(DIGITS / "weights.pt"))
    with torch.no_grad():
        float_acc = 100.0 * float(np.mean(model(torch.from_numpy(z["x"])).argmax(1).numpy() == z["y"]))
    assert float_acc - int8_acc <= 0.5
    report = json.loads((tflite_build / "report.json").read_text())
    assert report["targets"]["tflite"]["accuracy"] == pytest.approx(int8_acc)
    assert report["targets"]["tflite"]["executed"] is True


def test_within_declared_tolerance_of_simulation_on_every_sample(tflite_build: Path, tflite_qmodel: QuantizedModel) -> None:
    from qconvert_tflite import TFLiteTarget
    from qconvert_tflite.runtime import run_tflite

    x = np.load(DIGITS / "eval.npz")["x"]
    (out,) = run_tflite(tflite_build / "tflite" / "model.tflite", [x])
    sim = _simulation(tflite_qmodel, x)
    (scale,) = tflite_qmodel.output_scales()
    assert scale is not None
    steps = np.abs(out - sim) / scale
    assert steps.max() <= TFLiteTarget.parity_tolerance_lsb + 1e-4
    assert np.mean(steps > 0.5) < 0.01  # a flipped step is rare, not the rule
    assert np.allclose(np.round(out / scale), out / scale, atol=1e-3)  # the int8 output grid


BOARD = textwrap.dedent('''
    """What a board does with OUT/tflite: numpy, the interpreter and the manifest; no torch, no qconvert."""
    import json, sys
    sys.modules["torch"] = None
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    d = sys.argv[1]
    extra = json.load(open(f"{d}/manifest.json"))["artifact"]["details"]
    (inp,), (outp,) = extra["int8_inputs"], extra["int8_outputs"]
    it = Interpreter(model_path=f"{d}/model.tflite"); it.allocate_tensors()
    x = np.load(sys.argv[2])["x"]
    raw = np.clip(np.round(x / inp["scale"]) + inp["zero_point"], -128, 127).astype(np.int8)
    out = []
    for i in range(len(raw)):
        it.set_tensor(it.get_input_details()[0]["index"], raw[i : i + 1]); it.invoke()
        out.append(it.get_tensor(it.get_output_details()[0]["index"])[0])
    q = np.array(out)
    assert q.dtype == np.int8
    np.save(sys.argv[3], (q.astype(np.float32) - outp["zero_point"]) * outp["scale"])
''')


def test_report_has_latency_against_float_tflite_at_the_batch_the_artifact_runs(tflite_build: Path) -> None:
    """The .tflite vs a float .tflite of the same model in the same interpreter. litert-torch lowers static
    shapes and the digits artifact cannot be resized from its batch 1 to 16, so only batch 1 is reported."""
    lat = json.loads((tflite_build / "report.json").read_text())["targets"]["tflite"]["latency"]
    assert lat["runtime"].startswith("ai-edge-litert ")
    assert list(lat["by_batch"]) == ["1"]
    assert lat["by_batch"]["1"]["int8_ms"] > 0 and lat["by_batch"]["1"]["float_ms"] > 0
    # 3 convolutions, 2 depthwise, the residual add, the mean and the fully connected layer, all int8.
    assert lat["int8_nodes"] == 8 and lat["float_nodes"] == 0 and lat["float_ops"] == []


def test_board_feeds_raw_int8_from_manifest_and_gets_the_same_predictions(tflite_build: Path, tflite_qmodel: QuantizedModel,
                                                                           tmp_path: Path) -> None:
    script, out = tmp_path / "board.py", tmp_path / "out.npy"
    script.write_text(BOARD)
    subprocess.run([sys.executable, str(script), str(tflite_build / "tflite"), str(DIGITS / "eval.npz"), str(out)], check=True,
                   capture_output=True, timeout=120)
    board = np.load(out)
    x = np.load(DIGITS / "eval.npz")["x"]
    sim = _simulation(tflite_qmodel, x)
    assert np.array_equal(board.argmax(1), sim.argmax(1))
    golden = tflite_build / "tflite" / "golden"
    np.testing.assert_array_equal(board[:8], np.load(golden / "output_output.npy"))


def test_float_io_at_batch_4_adds_quantize_and_dequantize_at_the_edges_only(tflite_build: Path, tflite_qmodel: QuantizedModel,
                                                                            tmp_path: Path) -> None:
    """io=float puts QUANTIZE/DEQUANTIZE around the same integer graph: per sample, it gives exactly what
    the int8 artifact gives on input quantized by hand. batch=4 runs 10 samples as 4 + 4 + 2 (padded)."""
    from qconvert_tflite import TFLiteTarget
    from qconvert_tflite.options import TFLiteOptions

    target = TFLiteTarget()
    art = target.emit(tflite_qmodel, tmp_path, TFLiteOptions(io="float", batch=4))
    it = _interpreter(art.path)
    assert it.get_input_details()[0]["dtype"] == np.float32 and it.get_output_details()[0]["dtype"] == np.float32
    assert it.get_input_details()[0]["shape"][0] == 4
    counts = TfliteDetails.of(art).op_counts
    assert counts["QUANTIZE"] == 1 and counts["DEQUANTIZE"] == 1
    x = np.load(DIGITS / "eval.npz")["x"][:10]
    (out,) = target.run(art, {"x": x})
    int8 = _interpreter(tflite_build / "tflite" / "model.tflite")
    (si, zi), (so, zo) = int8.get_input_details()[0]["quantization"], int8.get_output_details()[0]["quantization"]
    for i in range(len(x)):
        int8.set_tensor(int8.get_input_details()[0]["index"], np.clip(np.round(x[i : i + 1] / si) + zi, -128, 127).astype(np.int8))
        int8.invoke()
        expected = (int8.get_tensor(int8.get_output_details()[0]["index"]).astype(np.float32) - zo) * so
        np.testing.assert_allclose(out[i : i + 1], expected, rtol=0, atol=1e-6)


def test_asym_u_activations_are_stored_as_int8_on_the_same_grid(tflite_qmodel: QuantizedModel, tflite_build: Path,
                                                                  digits_session: Session) -> None:
    """The recipe's uint8 activations and TFLite's int8 ones are the same values: the simulations agree bit for bit."""
    assert digits_session.recipe.activations.mode == "asym_u"
    onnx_like = quantize(digits_session.captured, digits_session.recipe, StatsSet.load(tflite_build / "stats"), target="uint8")
    x = np.load(DIGITS / "eval.npz")["x"][:64]
    np.testing.assert_array_equal(_simulation(tflite_qmodel, x), _simulation(onnx_like, x))
    zps = {q.key: q.zero_point for q in onnx_like.qparams if q.role == "activation"}
    shifted = [(zps[q.key], q.zero_point) for q in tflite_qmodel.qparams if q.role == "activation" and q.key in zps]
    assert shifted and all(u is not None and u - 128 == s for u, s in shifted)
    assert not any("adapted" in w for w in tflite_qmodel.warnings)


def test_int16_activations_must_be_symmetric_16x8(tflite_build: Path, digits_session: Session) -> None:
    """TFLite's 16x8 kernels take int16 activations with zero point 0: asym 16-bit is refused or adapted to sym."""
    from qconvert_tflite import TFLiteTarget

    stats = StatsSet.load(tflite_build / "stats")
    wide = digits_session.recipe.model_copy(update={"activations": digits_session.recipe.activations.model_copy(update={"bits": 16})})
    constraints = TFLiteTarget().constraints(TFLiteTarget.Options())
    with pytest.raises(ConstraintError, match=r"target 'tflite': layer '.*'.*activation mode at 16 bits must be one of \['sym'\]"):
        quantize(digits_session.captured, wide.model_copy(update={"on_unsupported": "error"}), stats, constraints, "tflite")
    adapted = quantize(digits_session.captured, wide.model_copy(update={"on_unsupported": "adapt"}), stats, constraints, "tflite")
    assert adapted.warnings and all("at 16 bits must be one of ['sym']" in w and w.endswith("adapted") for w in adapted.warnings)
    assert {(q.bits, q.mode) for q in adapted.qparams if q.role == "activation"} == {(16, "sym")}


def test_manifest_records_runtime_and_io(tflite_build: Path) -> None:
    m = json.loads((tflite_build / "tflite" / "manifest.json").read_text())
    assert m["runtime"].startswith("ai-edge-litert ")
    extra = m["artifact"]["details"]
    assert extra["io"] == "int8" and extra["float_ops"] == []
    assert extra["int8_inputs"][0]["dtype"] == "int8" and extra["int8_inputs"][0]["shape"] == [1, 1, 16, 16]


def test_unavailable_without_an_interpreter_gives_the_install_hint(tmp_path: Path) -> None:
    """With neither ai-edge-litert nor tflite-runtime importable, the target says how to get one."""
    code = ('import sys; sys.modules["ai_edge_litert"] = None; sys.modules["ai_edge_litert.interpreter"] = None\n'
            'sys.modules["tflite_runtime"] = None\n'
            'from qconvert_tflite import TFLiteTarget; a = TFLiteTarget().available(); print(a.ok, a.reason)')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.startswith("False ") and "pip install ai-edge-litert" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_imagenet_models_within_declared_tolerance(name: str, tmp_path: Path) -> None:
    """Where the declared 2 steps come from: random-weight ResNet-18 measured 1, MobileNetV2 2 (224x224, 16 inputs)."""
    from qconvert_tflite import TFLiteTarget

    from bench import models
    from qconvert.core.capture import capture
    from qconvert.core.quantize import calibrate
    from qconvert.recipe.model import Recipe

    model = getattr(models, name)()
    g = torch.Generator().manual_seed(0)
    calib, x = torch.randn(32, 3, 224, 224, generator=g), torch.randn(16, 3, 224, 224, generator=g)
    cap = capture(model, (calib[:2],))
    target = TFLiteTarget()
    qm = quantize(cap, Recipe(), calibrate(cap, Recipe(), [(calib[:16],), (calib[16:],)]), target.constraints(target.Options()), "tflite")
    art = target.emit(qm, tmp_path, target.Options())
    assert TfliteDetails.of(art).float_ops == []
    (out,) = target.run(art, {"x": x.numpy()})
    (scale,) = qm.output_scales()
    steps = float(np.abs(out - _simulation(qm, x.numpy())).max() / scale)
    assert steps <= TFLiteTarget.parity_tolerance_lsb + 1e-4, f"{name}: {steps:.3f} steps"
