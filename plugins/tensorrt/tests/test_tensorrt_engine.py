"""The engine path: runs only where tensorrt imports and a CUDA GPU is visible (marked gpu).

Elsewhere every test here is skipped with the reason, so a report can say
exactly whether an engine was ever built and run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from qconvert_tensorrt import TensorRTTarget
from qconvert_tensorrt.details import TensorRTDetails
from qconvert_tensorrt.engine import engine_support
from qconvert_tensorrt.options import TensorRTOptions

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not engine_support().ok, reason=engine_support().reason or "no engine support")]


def test_engine_builds_runs_and_matches_the_simulation(patterns: dict, tmp_path: Path) -> None:
    p = patterns["resnet_downsample"]
    target = TensorRTTarget()
    art = target.emit(p.qmodel, tmp_path, TensorRTOptions(opt_batch=8, max_batch=64))
    assert TensorRTDetails.of(art).engine.built is True and art.main_file == "model.engine"
    assert (tmp_path / "timing.cache").stat().st_size > 0
    json.loads((tmp_path / "engine_layers.json").read_text())
    step = p.qmodel.parity_steps()[0]
    for n in (1, 64):  # both ends of the optimization profile
        x = p.x[:n]
        (out,) = target.run(art, {"x": x.numpy()})
        with torch.no_grad():
            sim, ref = p.qmodel.graph(x).numpy(), p.model(x).numpy()
        assert out.shape == sim.shape
        # FP16 fallback layers and TensorRT's own int8 rounding: looser than onnxruntime, still a few steps
        assert np.abs(out - sim).max() / step <= 4 * TensorRTTarget.parity_tolerance_lsb
        assert 10 * np.log10(np.sum(ref**2) / np.sum((out - ref) ** 2)) > 20.0


def test_emitted_script_builds_the_same_engine(patterns: dict, tmp_path: Path) -> None:
    TensorRTTarget().emit(patterns["mobilenetv2"].qmodel, tmp_path, TensorRTOptions(engine="skip"))
    assert not (tmp_path / "model.engine").exists()
    run = subprocess.run([sys.executable, str(tmp_path / "build_engine.py")], check=False, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "model.engine").stat().st_size > 0
