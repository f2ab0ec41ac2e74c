"""Bring your own QAT, Brevitas: QuantConv2d/QuantLinear/QuantReLU/QuantIdentity digits CNN trained a
few steps, with float scales (per-channel weights, BatchNorm after the conv) and with power-of-two
(fixed-point) scales, BatchNorm merged before QAT, which is TIDL's case."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from imports_helpers import (
    TARGETS,
    assert_artifact_matches_source,
    assert_target_contract,
    build,
    no_calibration,
    refusal,
    report,
    source_outputs,
)
from qat_sources import BrevitasDigits, train

pytest.importorskip("brevitas")


@pytest.fixture(scope="module")
def brev(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("brevitas")
    out: dict[str, object] = {"dir": d}
    for name, pot in (("float", False), ("pot", True)):
        model = train(BrevitasDigits(pot=pot))
        torch.save(model.state_dict(), d / f"{name}.pt")
        out[name] = {"weights": d / f"{name}.pt", "expected": source_outputs(model.eval()), "model": model}
    return out


@pytest.mark.usefixtures("no_calibration")
def test_brevitas_onnx_keeps_every_learned_scale(brev: dict) -> None:
    out = brev["dir"] / "OUT"
    code, text = build("tests/qat_sources.py:brevitas_prepared", out, ("onnx",), "--weights", str(brev["float"]["weights"]))
    assert code == 0, text
    rep = report(out)
    assert rep["calibration"]["ranges"] == "imported from Brevitas"
    assert rep["targets"]["onnx"]["imported_grid"]["changed"] == []  # int8 identity and uint8 ReLU grids both kept
    assert_artifact_matches_source(out, "onnx", brev["float"]["expected"])
    model = brev["float"]["model"]
    learned = float(model.block_relu.act_quant.scale())
    manifest = (out / "onnx" / "manifest.json").read_text()
    assert any(abs(q["scale_max"] - learned) <= 1e-6 * learned for q in __import__("json").loads(manifest)["quantization"]
               if q["key"] == "relu_2")


@pytest.mark.slow
def test_power_of_two_scales_reach_tidl_unchanged(brev: dict) -> None:
    out = brev["dir"] / "OUT_tidl"
    code, text = build("tests/qat_sources.py:brevitas_pot_prepared", out, ("tidl",), "--weights", str(brev["pot"]["weights"]))
    assert code == 0, text
    entry = report(out)["targets"]["tidl"]
    assert entry["imported_grid"]["changed"] == []  # every trained power-of-two grid is TIDL's
    assert entry["vs_float"]["max_abs_error"] / entry["parity_step"] <= entry["tolerance_lsb"] + 2


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_brevitas_every_target(brev: dict, target: str, tmp_path: Path) -> None:
    code, text = build("tests/qat_sources.py:brevitas_prepared", tmp_path / "OUT", (target,), "--weights", str(brev["float"]["weights"]))
    if code == 2:
        refusal(text, target)
        return
    assert code == 0, text
    assert_target_contract(tmp_path / "OUT", target, brev["float"]["expected"])


__all__ = ["no_calibration"]  # the fixture, imported so pytest finds it
