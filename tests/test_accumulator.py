"""Recipe ``accumulator_bits``: the widest partial sum per layer on the calibration data, gated (exit 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from qconvert.core.accumulator import signed_bits

MODEL = '''
import torch
from torch import nn


class Wide(nn.Module):
    """x (N, 4096) -> linear (4096 -> 4, positive weights) -> relu -> linear (4 -> 3): a fan-in of 4096."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.wide = nn.Linear(4096, 4)
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            self.wide.weight.copy_(torch.rand(4, 4096, generator=g) * 0.5 + 0.5)
            self.wide.bias.zero_()

    def forward(self, x):
        return self.head(torch.relu(self.wide(x)))


def build():
    return Wide()
'''


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("wide")
    (d / "model.py").write_text(MODEL)
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", x=rng.random((64, 4096), dtype=np.float32))
    return d


def _build(d: Path, bits: int, out: Path) -> subprocess.CompletedProcess[str]:
    recipe = d / f"recipe{bits}.yaml"
    # the head's int32 bias alone needs ~18 bits: it is given a 32-bit accumulator by a per-layer override
    recipe.write_text(f"input_shape: [1, 4096]\naccumulator_bits: {bits}\ncalibration: {{batch_size: 16}}\n"
                      "overrides: [{match: head, accumulator_bits: 32}]\n")
    cmd = [str(Path(sys.executable).parent / "qconvert"), "build", "--model", f"{d / 'model.py'}:build", "--recipe", str(recipe),
           "--calib-data", str(d / "calib.npz"), "--target", "onnx", "--no-latency", "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _widest_partial_sum_from_artifact(onnx_path: Path, x: np.ndarray) -> int:
    """Independently of the simulation: quantize x with the file's input QuantizeLinear, multiply by the
    file's int8 weights, and bound the partial sums by the sums of positive and of negative products."""
    model = onnx.load(onnx_path)
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    q_in = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == model.graph.input[0].name)
    scale, zp = float(values[q_in.input[1]]), int(values[q_in.input[2]])
    xq = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.int64) - zp
    w_dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in values
                and values[n.input[0]].shape == (4, 4096))
    w = values[w_dq.input[0]].astype(np.int64)
    pos = np.clip(xq, 0, None) @ np.clip(w, 0, None).T + np.clip(-xq, 0, None) @ np.clip(-w, 0, None).T
    neg = np.clip(xq, 0, None) @ np.clip(-w, 0, None).T + np.clip(-xq, 0, None) @ np.clip(w, 0, None).T
    return int(max(pos.max(), neg.max()))


def test_wide_layer_overflows_16_bits_exit_3_and_is_named(wide: Path, tmp_path: Path) -> None:
    proc = _build(wide, 16, tmp_path / "OUT16")
    assert proc.returncode == 3, proc.stderr
    report = json.loads((tmp_path / "OUT16" / "report.json").read_text())
    acc = report["targets"]["onnx"]["accumulators"]
    assert acc["overflowing"] == ["wide"] and acc["data"] == "calibration"
    layer = next(w for w in acc["layers"] if w["layer"] == "wide")
    x = np.load(wide / "calib.npz")["x"]
    expected = signed_bits(_widest_partial_sum_from_artifact(tmp_path / "OUT16" / "onnx" / "model.onnx", x))
    assert layer["partial_bits"] == expected and expected > 16 and layer["fan_in"] == 4096
    assert f"gate failed: onnx: layer 'wide': widest partial sum {expected} bits > limit 16 bits" in proc.stderr
    assert "'head'" not in proc.stderr and next(w for w in acc["layers"] if w["layer"] == "head")["limit"] == 32


def test_same_model_passes_at_32_bits(wide: Path, tmp_path: Path) -> None:
    proc = _build(wide, 32, tmp_path / "OUT32")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "OUT32" / "report.json").read_text())
    assert report["targets"]["onnx"]["accumulators"]["overflowing"] == []
    checks = [c for c in report["gates"]["checks"] if c["metric"] == "accumulator_bits"]
    assert {c["layer"] for c in checks} == {"wide", "head"} and all(c["passed"] for c in checks)
