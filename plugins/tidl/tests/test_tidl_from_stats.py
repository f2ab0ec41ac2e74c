"""A TIDL build from saved statistics (``--stats``, no calibration data) writes the example
inputs as its calibration frames and says so; it used to write an empty file and crash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from qconvert.cli import main


def test_tidl_build_from_stats_writes_frames_and_a_note(digits: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    stats = tmp_path / "stats"
    r = runner.invoke(main, ["calibrate", "--model", f"{digits['model']}:build", "--weights", str(digits["weights"]),
                             "--recipe", str(digits["recipe"]), "--calib-data", str(digits["calib"]), "--out", str(stats)])
    assert r.exit_code == 0, r.output
    with np.load(digits["eval"]) as z:
        np.savez(tmp_path / "eval.npz", x=z["x"][:64], y=z["y"][:64])
    r = runner.invoke(main, ["build", "--model", f"{digits['model']}:build", "--weights", str(digits["weights"]),
                             "--recipe", str(digits["recipe"]), "--stats", str(stats), "--eval-data", str(tmp_path / "eval.npz"),
                             "--target", "tidl", "--out", str(tmp_path / "OUT"), "--no-latency"])
    assert r.exit_code in (0, 3), r.output
    out = tmp_path / "OUT" / "tidl"
    frames = np.load(next(out.glob("*.npy")))
    assert len(frames) > 0 and np.isfinite(frames).all()
    notes = json.loads((tmp_path / "OUT" / "report.json").read_text())["targets"]["tidl"]["notes"]
    assert any("no calibration data in this build" in n for n in notes), notes
