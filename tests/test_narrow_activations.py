"""Sub-8-bit activations (torch.ao's 7-bit reduce_range, 4-bit) on tflite and tvm: each tensor saturates to its
own range in the runtime, as in the simulation (issue 17). Before, LiteRT's kernels and TVM's QuantizeLinear
saturated to the full int8/uint8 range and the digits build at 7 bits was 7 output steps off its simulation.

Real builds, real runtimes (LiteRT, TVM's Relax VM); the expected bound is the tolerance, not a value read
from the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qconvert.cli import main

DIGITS = Path("samples/digits")


def _build(tmp_path: Path, target: str, bits: int) -> dict:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"version: 1\nactivations: {{bits: {bits}, mode: asym_u}}\n")
    out = tmp_path / "OUT"
    r = CliRunner().invoke(main, ["build", "--model", f"{DIGITS}/model.py:build", "--weights", f"{DIGITS}/weights.pt",
                                  "--recipe", str(recipe), "--calib-data", f"{DIGITS}/calib.npz",
                                  "--eval-data", f"{DIGITS}/eval.npz", "--target", target, "--no-latency", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return json.loads((out / "report.json").read_text())


def _available(target: str) -> None:
    from qconvert.targets.registry import TargetRegistry

    av = TargetRegistry().get(target).available()
    if not av.ok:
        pytest.skip(av.reason)


def test_tflite_bounds_seven_bit_activations_to_their_range(tmp_path: Path) -> None:
    _available("tflite")
    entry = _build(tmp_path, "tflite", 7)["targets"]["tflite"]
    # within one output step of the simulation over all 500 held-out digits (7 steps before the bounds)
    assert entry["vs_simulation"]["max_lsb_error"] <= 1.0 + 1e-4, entry["vs_simulation"]
    manifest = json.loads((tmp_path / "OUT" / "tflite" / "manifest.json").read_text())
    assert manifest["artifact"]["details"]["narrow_range_bounds"] >= 8  # input, 6 layers, pool, logits
    assert any("bounded to their own range" in n for n in entry["notes"])
    # per-layer parity reads the bounded tensors, not the raw kernel outputs before them
    layers = [r for r in entry["layer_parity"]["layers"] if r.get("runtime_tensor")]
    assert layers and all(r["runtime_tensor"].endswith("_narrow") for r in layers)
    assert max(r["max_steps"] for r in layers) <= 1.0 + 1e-4

    # the bound itself, in LiteRT: a raw int8 input above the 7-bit range's top code reads back as that code
    from qconvert_tflite.runtime import load

    m = load(tmp_path / "OUT" / "tflite" / "model.tflite", preserve_all_tensors=True)
    edge = m.inputs[0]
    top = np.iinfo(np.int8).max
    m.interpreter.set_tensor(edge.index, np.full(edge.shape, top, dtype=np.int8))
    m.interpreter.invoke()
    bounded = [d["index"] for d in m.interpreter.get_tensor_details() if d["name"].endswith("args_0_narrow")]
    assert bounded and int(m.interpreter.get_tensor(bounded[0]).max()) == 63  # asym_s 7 bits: [-64, 63]


@pytest.mark.slow  # TVM compiles the model (~30 s on 2 cores)
def test_tvm_clips_seven_bit_activations_to_their_range(tmp_path: Path) -> None:
    _available("tvm")
    entry = _build(tmp_path, "tvm", 7)["targets"]["tvm"]
    assert entry["vs_simulation"]["max_lsb_error"] <= 1.0 + 1e-4, entry["vs_simulation"]
    manifest = json.loads((tmp_path / "OUT" / "tvm" / "manifest.json").read_text())
    assert manifest["artifact"]["details"]["narrow_range_clips"] >= 8
