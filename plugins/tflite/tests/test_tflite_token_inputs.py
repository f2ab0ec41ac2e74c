"""Integer model inputs (token ids) reach LiteRT as integers, not as quantized reals.

A token-id input edge is int32/int64 with no scale: feeding it through the int8
input quantization turned every id into int32's maximum (EMBEDDING_LOOKUP out of bounds).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qconvert.cli import main
from qconvert.targets.registry import TargetRegistry

MODEL = '''
import torch
from torch import nn

class Tokens(nn.Module):
    """ids [N, 6] int64 -> embedding(30, 16) -> mean over tokens -> linear -> 4 logits"""

    def __init__(self):
        super().__init__()
        self.emb, self.fc = nn.Embedding(30, 16), nn.Linear(16, 4)

    def forward(self, input_ids):
        return self.fc(torch.relu(self.emb(input_ids).mean(1)))

def build():
    torch.manual_seed(0)
    return Tokens()
'''


def test_token_ids_build_and_verify_in_litert(tmp_path: Path) -> None:
    if not TargetRegistry().get("tflite").available().ok:
        pytest.skip("tflite target unavailable: pip install -e plugins/tflite")
    (tmp_path / "m.py").write_text(MODEL)
    (tmp_path / "r.yaml").write_text("calibration: {method: minmax, num_samples: 64, batch_size: 16}\n")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", input_ids=rng.integers(0, 30, (64, 6)))
    np.savez(tmp_path / "eval.npz", input_ids=rng.integers(0, 30, (32, 6)))
    r = CliRunner().invoke(main, ["build", "--model", f"{tmp_path / 'm.py'}:build", "--recipe", str(tmp_path / "r.yaml"),
                                  "--calib-data", str(tmp_path / "calib.npz"), "--eval-data", str(tmp_path / "eval.npz"),
                                  "--target", "tflite", "--out", str(tmp_path / "OUT"), "--no-latency"])
    assert r.exit_code == 0, r.output
    t = json.loads((tmp_path / "OUT" / "report.json").read_text())["targets"]["tflite"]
    assert t["vs_simulation"]["max_lsb_error"] <= t["tolerance_lsb"]
    assert t["vs_float"]["top1_agreement"] >= 0.9
