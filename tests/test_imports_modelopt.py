"""Bring your own QAT, NVIDIA ModelOpt: mtq.quantize (INT8_DEFAULT_CFG, max calibration) then a few
QAT steps; and the same model's state dict under pytorch-quantization's legacy buffer names.

ModelOpt quantizes the inputs of conv, linear and pooling (TensorRT's placement): tensorrt builds;
targets that also quantize conv outputs and residual adds refuse in one line naming the tensor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from imports_helpers import TARGETS, assert_target_contract, build, no_calibration, refusal, report, source_outputs
from qat_sources import legacy_names, modelopt_quantized, train, train_data

pytest.importorskip("modelopt.torch.quantization")
ADAPT = "version: 1\non_unsupported: adapt\n"


@pytest.fixture(scope="module")
def mo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("modelopt")
    x, _ = train_data()
    model = train(modelopt_quantized(x[:128]))
    torch.save(model.state_dict(), d / "mo.pt")
    torch.save(legacy_names(model.state_dict()), d / "legacy.pt")
    (d / "adapt.yaml").write_text(ADAPT)
    return {"dir": d, "weights": d / "mo.pt", "legacy": d / "legacy.pt", "recipe": d / "adapt.yaml",
            "expected": source_outputs(model.eval()), "model": model}


@pytest.mark.usefixtures("no_calibration")
def test_modelopt_tensorrt_reads_amax_and_folds_batchnorm(mo: dict) -> None:
    out = mo["dir"] / "OUT"
    code, text = build("tests/qat_sources.py:modelopt_prepared", out, ("tensorrt",), "--weights", str(mo["weights"]),
                       "--recipe", str(mo["recipe"]))
    assert code == 0, text
    rep = report(out)
    assert rep["calibration"]["ranges"] == "imported from ModelOpt"
    grid = rep["targets"]["tensorrt"]["imported_grid"]
    # activations are symmetric int8 already: only weights may move (to TensorRT's narrow [-127, 127])
    assert all(c["role"] == "weight" and c["scale_change"] < 1e-6 for c in grid["changed"]), grid["changed"]
    manifest = (out / "tensorrt" / "manifest.json").read_text()
    amax = float(mo["model"].block_conv1[0].input_quantizer.amax)
    assert f"{amax / 127:.6g}"[:6] in manifest.replace("e-0", "e-0")  # the trained input scale of block_conv1
    assert rep["targets"]["tensorrt"]["vs_float"]["top1_agreement"] >= 0.99


def test_legacy_pytorch_quantization_names_import_the_same_grids(mo: dict) -> None:
    a, b = mo["dir"] / "OUT", mo["dir"] / "B"  # OUT: the build above, from ModelOpt's own names
    if not a.exists():
        pytest.skip("needs test_modelopt_tensorrt_reads_amax_and_folds_batchnorm's build")
    code, text = build("tests/qat_sources.py:modelopt_prepared", b, ("tensorrt",), "--weights", str(mo["legacy"]),
                       "--recipe", str(mo["recipe"]))
    assert code == 0, text
    qa = [q for q in __import__("json").loads((a / "tensorrt" / "manifest.json").read_text())["quantization"]]
    qb = [q for q in __import__("json").loads((b / "tensorrt" / "manifest.json").read_text())["quantization"]]
    assert qa == qb


def test_onnx_refuses_tensors_modelopt_left_float(mo: dict, tmp_path: Path) -> None:
    code, text = build("tests/qat_sources.py:modelopt_prepared", tmp_path / "o", ("onnx",), "--weights", str(mo["weights"]))
    assert code == 2 and "no quantizer there" in refusal(text, "onnx")


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_modelopt_every_target(mo: dict, target: str, tmp_path: Path) -> None:
    code, text = build("tests/qat_sources.py:modelopt_prepared", tmp_path / "OUT", (target,), "--weights", str(mo["weights"]),
                       "--recipe", str(mo["recipe"]))
    if code == 2:
        refusal(text, target)
        return
    assert code == 0, text
    assert_target_contract(tmp_path / "OUT", target, mo["expected"])


__all__ = ["no_calibration"]  # the fixture, imported so pytest finds it
