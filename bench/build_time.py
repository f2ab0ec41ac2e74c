"""Issue 20: wall time of the README's digits build with all six targets, this checkout against commit 0044864.

The base is ``git archive 0044864`` unpacked in a temporary folder and put first on PYTHONPATH (its core and its six
plugins), run by the same interpreter and libraries; "new" is this checkout with ``--jobs auto`` (the default: the
targets in worker processes) and with ``--jobs 1`` (one after the other, as the base). The three run in turn,
``QCONVERT_BENCH_BUILD_ROUNDS`` rounds (default 2), so load from other work falls on each alike; the table gives
every run's wall seconds and the machine's 1-minute load before it, then the ratios of the medians. Each build is
``OMP_NUM_THREADS=1``, a fresh ``python -m qconvert.cli build`` process, its time from start to exit.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_COMMIT = "0044864"
PLUGINS = ("onnx", "pytorch", "tensorrt", "tflite", "tidl", "tvm")


def _args(out: Path) -> list[str]:
    d = "samples/digits"
    args = ["build", "--model", f"{d}/model.py:build", "--weights", f"{d}/weights.pt", "--recipe", f"{d}/recipe.yaml",
            "--calib-data", f"{d}/calib.npz", "--eval-data", f"{d}/eval.npz", "--out", str(out)]
    for t in PLUGINS:
        args += ["--target", t]
    return args


def _load() -> float:
    return os.getloadavg()[0]


def _build(cwd: Path, extra: list[str], pythonpath: str | None, out: Path) -> tuple[float, int]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "qconvert.cli", *_args(out), *extra], cwd=cwd, env=env, capture_output=True,
                       text=True, check=False)
    return time.perf_counter() - start, r.returncode


def run() -> None:
    rounds = int(os.environ.get("QCONVERT_BENCH_BUILD_ROUNDS", "2"))
    with tempfile.TemporaryDirectory(prefix="qconvert-bench-build-") as tmp:
        base = Path(tmp) / "base"
        try:
            archive = subprocess.run(["git", "archive", BASE_COMMIT], cwd=ROOT, capture_output=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"skipped: no git history of {BASE_COMMIT} here ({e})")
            return
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(base, filter="data")
        base_path = os.pathsep.join([str(base), *(str(base / "plugins" / p) for p in PLUGINS)])
        runs = {"base 0044864": (base, [], base_path), "new --jobs auto": (ROOT, [], None), "new --jobs 1": (ROOT, ["--jobs", "1"], None)}
        walls: dict[str, list[float]] = {k: [] for k in runs}
        print("| round | build | load before | wall s | exit |\n|---|---|---|---|---|")
        for i in range(rounds):
            for label, (cwd, extra, path) in runs.items():
                load = _load()
                wall, rc = _build(cwd, extra, path, Path(tmp) / "out" / f"{i}-{label.split()[0]}-{len(extra)}")
                walls[label].append(wall)
                print(f"| {i + 1} | {label} | {load:.1f} | {wall:.1f} | {rc} |", flush=True)
        med = {k: statistics.median(v) for k, v in walls.items()}
        b = med["base 0044864"]
        print(f"\nmedian wall: base {b:.1f} s, new --jobs auto {med['new --jobs auto']:.1f} s ({b / med['new --jobs auto']:.2f}x), "
              f"new --jobs 1 {med['new --jobs 1']:.1f} s ({b / med['new --jobs 1']:.2f}x); {os.cpu_count()} cores")
