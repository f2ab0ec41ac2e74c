"""torchrun with 2 gloo processes calibrates to the same statistics as one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _calibrate(args: list[str], out: Path, nproc: int) -> None:
    cmd = [sys.executable, "-m", "qconvert", "calibrate", *args, "--out", str(out)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--master-addr=127.0.0.1",
               f"--master-port={_free_port()}", "-m", "qconvert", "calibrate", *args, "--out", str(out)]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_two_gloo_ranks_equal_one_process(tmp_path: Path, digits: dict[str, Path]) -> None:
    recipe = tmp_path / "r.yaml"
    # 4 batches of 64: rank 0 gets batches 0 and 2, rank 1 gets 1 and 3
    recipe.write_text("version: 1\ncalibration: {num_samples: 256, batch_size: 64}\n")
    args = ["--model", f"{digits['model']}:build", "--weights", str(digits["weights"]), "--recipe", str(recipe),
            "--calib-data", str(digits["calib"])]
    _calibrate(args, tmp_path / "one", 1)
    _calibrate(args, tmp_path / "two", 2)
    one = json.loads((tmp_path / "one" / "stats.json").read_text())
    two = json.loads((tmp_path / "two" / "stats.json").read_text())
    assert one["fingerprint"] == two["fingerprint"]
    assert one["tensors"].keys() == two["tensors"].keys()
    for key, a in one["tensors"].items():
        b = two["tensors"][key]
        assert (a["min"], a["max"], a["count"], a["batches"]) == (b["min"], b["max"], b["count"], b["batches"]), key
        assert a["avg_min"] == np.float64(b["avg_min"]) or abs(a["avg_min"] - b["avg_min"]) < 1e-9
        assert abs(a["mean"] - b["mean"]) <= 1e-6 * max(1.0, abs(a["mean"]))
    h1, h2 = np.load(tmp_path / "one" / "histograms.npz"), np.load(tmp_path / "two" / "histograms.npz")
    for key in one["tensors"]:
        np.testing.assert_array_equal(h1[key], h2[key])
