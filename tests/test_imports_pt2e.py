"""Bring your own QAT, torchao PT2E: a prepare_qat_pt2e model (X86InductorQuantizer, QAT config)
trained a few steps, given live (factory + state dict) or converted and saved as a .pt2 Q/DQ graph.

X86InductorQuantizer fuses conv-bn + residual add (+ relu) and leaves the conv's output before
the add float. TensorRT's placement (the add fused into the conv) matches it and builds; targets
that quantize both add inputs refuse in one line naming that tensor (nothing is calibrated)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from imports_helpers import (
    TARGETS,
    assert_target_contract,
    build,
    no_calibration,
    refusal,
    report,
    source_outputs,
)
from qat_sources import pt2e_prepared, save_converted_pt2e, train

ADAPT = "version: 1\non_unsupported: adapt\n"


@pytest.fixture(scope="module")
def pt2e(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("pt2e")
    prepared = train(pt2e_prepared())
    torch.save(prepared.state_dict(), d / "prepared.pt")
    converted = save_converted_pt2e(prepared, d / "model.pt2")
    (d / "adapt.yaml").write_text(ADAPT)
    return {"dir": d, "weights": d / "prepared.pt", "pt2": d / "model.pt2", "expected": source_outputs(converted),
            "recipe": d / "adapt.yaml"}


@pytest.mark.usefixtures("no_calibration")
def test_saved_qdq_graph_builds_tensorrt_and_names_every_regridded_tensor(pt2e: dict) -> None:
    out = pt2e["dir"] / "OUT"
    code, text = build(str(pt2e["pt2"]), out, ("tensorrt",), "--recipe", str(pt2e["recipe"]))
    assert code == 0, text
    rep = report(out)
    assert rep["calibration"]["ranges"] == "imported from torchao PT2E"
    entry = rep["targets"]["tensorrt"]
    changed = {c["key"]: c for c in entry["imported_grid"]["changed"]}
    # TensorRT is symmetric: every uint8 activation grid and every full-range weight grid is re-encoded
    assert "x" in changed and changed["x"]["was"].startswith("[0, 255]") and changed["x"]["now"].startswith("[-128, 127]")
    assert all(c["now"].startswith("[-127, 127]") for k, c in changed.items() if c["role"] == "weight")
    assert sum(1 for n in entry["notes"] if n.startswith("grid changed:")) == len(changed)
    assert entry["vs_float"]["top1_agreement"] >= 0.98  # vs the Q/DQ graph's own forward, after re-encoding


def test_onnx_refuses_the_float_add_input_in_one_line(pt2e: dict, tmp_path: Path) -> None:
    code, text = build(str(pt2e["pt2"]), tmp_path / "o", ("onnx",))
    assert code == 2 and len(text.strip().splitlines()) == 1, text
    assert "target 'onnx': tensor 'conv2d_2' (layer 'block_conv2.0')" in text and "no quantizer there" in text
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_live_prepared_model_imports_like_its_converted_graph(pt2e: dict) -> None:
    out = pt2e["dir"] / "OUT_live"
    code, text = build("tests/qat_sources.py:pt2e_prepared", out, ("tensorrt",), "--weights", str(pt2e["weights"]),
                       "--recipe", str(pt2e["recipe"]))
    assert code == 0, text
    live = report(out)["targets"]["tensorrt"]["imported_grid"]
    assert live["tool"] == "torchao PT2E" and live["tensors"] >= 12


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_pt2e_every_target(pt2e: dict, target: str, tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    code, text = build(str(pt2e["pt2"]), out, (target,), "--recipe", str(pt2e["recipe"]))
    if code == 2:
        refusal(text, target)
        return
    assert code == 0, text
    assert_target_contract(out, target, pt2e["expected"])


__all__ = ["no_calibration"]  # the fixture, imported so pytest finds it
