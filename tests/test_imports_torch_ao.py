"""Bring your own QAT, torch.ao: models after prepare_qat_fx / prepare_qat, trained a few steps,
built without calibration; artifacts match the source model's own fake-quant forward."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from imports_helpers import TARGETS, assert_artifact_matches_source, assert_target_contract, build, no_calibration, report, source_outputs
from qat_sources import eager_prepared, float_twin_of, fx_prepared, held_out, train

from qconvert.core import observer as observer_module
from qconvert.imports import torch_ao


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("fx")
    model = train(fx_prepared())
    torch.save(model.state_dict(), d / "fx.pt")
    model.apply(torch.ao.quantization.disable_observer)
    return {"dir": d, "weights": d / "fx.pt", "expected": source_outputs(model.eval()), "model": model}


@pytest.fixture(scope="module")
def eager(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("eager")
    model = train(eager_prepared())
    torch.save(model.state_dict(), d / "eager.pt")
    model.apply(torch.ao.quantization.disable_observer)
    return {"dir": d, "weights": d / "eager.pt", "expected": source_outputs(model.eval())}


def _fail_on_data(*args: object, **kwargs: object) -> None:
    raise AssertionError("an observer saw data: an imported build must not calibrate")


def test_fx_qat_onnx_keeps_the_trained_grids_without_calibration(fx: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observer_module.RunningStats, "update", _fail_on_data)
    monkeypatch.setattr("qconvert.pipeline.calibrate", _fail_on_data)
    out = fx["dir"] / "OUT"
    code, text = build("tests/qat_sources.py:fx_prepared", out, ("onnx",), "--weights", str(fx["weights"]))
    assert code == 0, text
    rep = report(out)
    assert rep["calibration"]["ranges"] == "imported from torch.ao" and rep["calibration"]["samples"] is None
    assert "ranges: imported from torch.ao" in (out / "report.md").read_text()
    # onnx keeps every grid: uint8 reduce-range activations, full-range per-channel int8 weights
    assert rep["targets"]["onnx"]["imported_grid"]["changed"] == []
    assert_artifact_matches_source(out, "onnx", fx["expected"])
    # independently of the report: onnxruntime on held-out data against the source's forward
    x, _ = held_out()
    (got,) = ort.InferenceSession(str(out / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    step = rep["targets"]["onnx"]["parity_step"]
    assert np.abs(got - fx["expected"]).max() / step <= 3.0
    assert (got.argmax(1) == fx["expected"].argmax(1)).mean() >= 0.99


def test_fx_grids_are_read_exactly(fx: dict) -> None:
    source = torch_ao.open_source(fx_prepared())
    assert source.quantizers  # a fresh prepared model: grids exist before training too
    model = fx_prepared()
    model.load_state_dict(torch.load(fx["weights"], weights_only=True))
    fq = model.activation_post_process_3  # block_conv2 output (before the add): an affine grid
    grid = torch_ao.grid_of(fq)
    assert grid is not None and (grid.qmin, grid.qmax) == (0, 127)  # x86: reduced range
    assert grid.scale == (float(fq.scale),) and grid.zero_point == (int(fq.zero_point),)
    wgrid = torch_ao.grid_of(getattr(model.dw, "0").weight_fake_quant)
    assert wgrid is not None and wgrid.ch_axis == 0 and len(wgrid.scale) == 16 and (wgrid.qmin, wgrid.qmax) == (-128, 127)


@pytest.mark.usefixtures("no_calibration")
def test_eager_qat_onnx(eager: dict) -> None:
    out = eager["dir"] / "OUT"
    code, text = build("tests/qat_sources.py:eager_prepared", out, ("onnx",), "--weights", str(eager["weights"]))
    assert code == 0, text
    assert report(out)["calibration"]["ranges"] == "imported from torch.ao"
    assert_artifact_matches_source(out, "onnx", eager["expected"])


def test_calibration_data_is_refused_for_an_imported_model(fx: dict, tmp_path: Path) -> None:
    code, text = build("tests/qat_sources.py:fx_prepared", tmp_path / "o", ("onnx",), "--weights", str(fx["weights"]),
                       "--calib-data", "samples/digits/calib.npz")
    assert code == 2 and "--calib-data with a model quantized by torch.ao" in text and len(text.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_fx_qat_every_target(fx: dict, target: str, tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    code, text = build("tests/qat_sources.py:fx_prepared", out, (target,), "--weights", str(fx["weights"]))
    if code == 2:  # a refusal: one line naming the target and its rule
        assert len(text.strip().splitlines()) == 1 and f"target '{target}'" in text, text
        return
    assert code == 0, text
    assert_target_contract(out, target, fx["expected"])


def test_a_deliberately_odd_trained_scale_survives_where_recalibration_would_change_it(fx: dict, tmp_path: Path) -> None:
    """block_conv1's output scale set to 3x what training gave: the imported artifact keeps it (and
    matches the source model, which runs with it); a re-calibrated build picks its own scale."""
    import json

    state = torch.load(fx["weights"], weights_only=True)
    trained = float(state["activation_post_process_2.scale"])
    state["activation_post_process_2.scale"] = state["activation_post_process_2.scale"] * 3
    torch.save(state, tmp_path / "odd.pt")
    model = fx_prepared()
    model.load_state_dict(state)
    model.apply(torch.ao.quantization.disable_observer)
    expected = source_outputs(model.eval())

    code, text = build("tests/qat_sources.py:fx_prepared", tmp_path / "imported", ("onnx",), "--weights", str(tmp_path / "odd.pt"))
    assert code == 0, text
    q = {e["key"]: e for e in json.loads((tmp_path / "imported" / "onnx" / "manifest.json").read_text())["quantization"]}
    assert q["relu_1"]["scale_max"] == pytest.approx(3 * trained, rel=1e-6)
    assert report(tmp_path / "imported")["targets"]["onnx"]["vs_float"]["top1_agreement"] >= 0.99

    # the same float network, re-calibrated on the training data: its own (natural) scale for that tensor
    recal = tmp_path / "recal.yaml"
    recal.write_text("version: 1\nactivations: {bits: 7, mode: asym_u}\n")
    torch.save(float_twin_of(model).state_dict(), tmp_path / "twin.pt")
    code, text = build("tests/qat_sources.py:fx_float_twin", tmp_path / "recal", ("onnx",), "--weights", str(tmp_path / "twin.pt"),
                       "--recipe", str(recal), "--calib-data", "samples/digits/calib.npz")
    assert code == 0, text
    r = {e["key"]: e for e in json.loads((tmp_path / "recal" / "onnx" / "manifest.json").read_text())["quantization"]}
    assert abs(r["relu_1"]["scale_max"] / (3 * trained) - 1) > 0.3
    x, _ = held_out()
    sess = ort.InferenceSession(str(tmp_path / "recal" / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"x": x.numpy()})
    imported_err = report(tmp_path / "imported")["targets"]["onnx"]["vs_float"]["max_abs_error"]
    assert np.abs(got - expected).max() > 2 * imported_err  # the re-calibrated artifact is not the trained model


@pytest.mark.usefixtures("no_calibration")
def test_converted_int8_eager_model_imports_its_int8_grids(tmp_path: Path) -> None:
    """torch.ao.quantization.convert's int8 modules (still in torch 2.13): Quantize stub, quantized
    ConvReLU/Conv/Linear, QFunctional add; the reference is the int8 model run by its own kernels."""
    out = tmp_path / "OUT"
    code, text = build("tests/qat_sources.py:eager_converted", out, ("onnx",))
    assert code == 0, text
    entry = report(out)["targets"]["onnx"]
    assert entry["imported_grid"]["changed"] == [] and entry["imported_grid"]["tensors"] >= 14
    assert not any("is not imported" in n for n in entry["imported_grid"]["notes"])
    # fbgemm's int8 kernels requantize in their own order: a step more than float fake quantization
    assert entry["vs_float"]["max_abs_error"] / entry["parity_step"] <= entry["tolerance_lsb"] + 3
    assert entry["vs_float"]["top1_agreement"] >= 0.99


__all__ = ["no_calibration"]  # the fixture, imported so pytest finds it
