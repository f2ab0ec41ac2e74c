"""One ``python -m qconvert build --target tvm`` of a small model written to a folder, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def build_tvm_from_source(tmp_path: Path, model_source: str, data: np.ndarray) -> subprocess.CompletedProcess[str]:
    """Write ``model.py`` (a ``build()`` factory), an 8-bit min/max ``recipe.yaml`` calibrating on every sample and
    ``data.npz`` (calibration = evaluation) into ``tmp_path``, build for tvm into ``tmp_path/OUT`` without latency,
    and return the finished process."""
    from qconvert_tvm import TvmTarget

    if not TvmTarget().available().ok:
        pytest.skip(TvmTarget().available().reason)
    (tmp_path / "model.py").write_text(model_source)
    (tmp_path / "recipe.yaml").write_text(
        "version: 1\nweights: {bits: 8, mode: sym, granularity: per_channel}\nactivations: {bits: 8, mode: asym_u}\n"
        f"calibration: {{method: minmax, num_samples: {len(data)}, batch_size: 32}}\non_unsupported: adapt\n")
    np.savez(tmp_path / "data.npz", x=data)
    cmd = [sys.executable, "-m", "qconvert", "build", "--model", f"{tmp_path / 'model.py'}:build",
           "--recipe", str(tmp_path / "recipe.yaml"), "--calib-data", str(tmp_path / "data.npz"),
           "--eval-data", str(tmp_path / "data.npz"), "--target", "tvm", "--out", str(tmp_path / "OUT"),
           "--quiet", "--no-latency"]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
