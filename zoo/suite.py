"""Build every zoo model for every target through the CLI, and tabulate what came out.

Per model: write its calibration and evaluation ``.npz`` once, ``qconvert calibrate``
once, then one ``qconvert build --stats`` per target (so one target's failure does not
hide another's result). Each build's exit code, last stderr line and ``report.json``
make one row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zoo.data import write_npz
from zoo.registry import ZooEntry

__all__ = ["Row", "available_targets", "format_table", "run_model"]

ROOT = Path(__file__).resolve().parent.parent
RECIPE = Path(__file__).with_name("recipe.yaml")


@dataclass(frozen=True)
class Row:
    """One build's outcome; metrics are None where the build wrote no report."""

    model: str
    target: str
    exit_code: int
    build_s: float
    max_lsb: float | None = None
    sqnr_db: float | None = None
    top1_agree: float | None = None
    speedup_b16: float | None = None
    message: str = ""


def _qconvert() -> list[str]:
    return [sys.executable, "-m", "qconvert"]


def available_targets() -> list[str]:
    """Installed targets whose runtime works here (``qconvert targets --available --names``)."""
    out = subprocess.run([*_qconvert(), "targets", "--available", "--names"], capture_output=True, text=True, check=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(ROOT)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _run(cmd: list[str], timeout_s: float) -> tuple[int, float, str]:
    start = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout_s, check=False, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - start, f"timed out after {timeout_s:.0f} s"
    return p.returncode, time.perf_counter() - start, _last_line(p.stderr) or _last_line(p.stdout)


def _metric(entry: dict, *path: str) -> float | None:
    node: object = entry
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def _row_from_report(model: str, target: str, code: int, seconds: float, message: str, report: Path) -> Row:
    if not report.is_file():
        return Row(model, target, code, seconds, message=message)
    t = json.loads(report.read_text()).get("targets", {}).get(target, {})
    return Row(model, target, code, seconds,
               max_lsb=_metric(t, "vs_simulation", "max_lsb_error"),
               sqnr_db=_metric(t, "vs_float", "sqnr_db"),
               top1_agree=_metric(t, "vs_float", "top1_agreement"),
               speedup_b16=_metric(t, "latency", "by_batch", "16", "speedup"),
               message="" if code == 0 else message)


def run_model(e: ZooEntry, targets: list[str], out: Path, latency: set[str], timeout_s: float = 1800,
              eval_views: int | None = None, on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Calibrate ``e`` once and build it for each target (timed against float for targets in ``latency``),
    evaluated on ``eval_views`` samples (None: ``zoo.data.COUNTS``); ``on_row`` sees each row as it is made."""
    work = out.resolve() / e.name
    calib = write_npz(e.data, "calib", work / "calib.npz")
    evald = write_npz(e.data, "eval", work / "eval.npz", eval_views)
    common = ["--model", e.model_ref, "--recipe", str(RECIPE)]
    if len(targets) == 1:  # one process: calibrate inside the build
        data = ["--calib-data", str(calib)]
    else:  # calibrate once, reuse the statistics in every target's build
        code, seconds, message = _run([*_qconvert(), "calibrate", *common, "--calib-data", str(calib), "--out", str(work / "stats")],
                                      timeout_s)
        if code != 0:
            failed = [Row(e.name, t, code, seconds, message=f"calibrate: {message}") for t in targets]
            for r in failed:
                if on_row is not None:
                    on_row(r)
            return failed
        data = ["--stats", str(work / "stats")]
    rows = []
    for t in targets:
        dest = work / t
        cmd = [*_qconvert(), "build", *common, *data, "--eval-data", str(evald), "--target", t,
               "--out", str(dest), "--quiet", "--latency" if t in latency else "--no-latency"]
        code, seconds, message = _run(cmd, timeout_s)
        rows.append(_row_from_report(e.name, t, code, seconds, message, dest / "report.json"))
        if on_row is not None:
            on_row(rows[-1])
    return rows


def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def format_table(rows: list[Row]) -> str:
    """One markdown table: model, target, exit code, parity, SQNR and agreement vs float, speed-up, build time."""
    lines = [("| model | target | exit | max err vs sim (LSB) | SQNR vs float (dB) | top-1 agree vs float | "
              "int8 speed-up b16 | build s | error (exit != 0) |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        agree = None if r.top1_agree is None else 100 * r.top1_agree
        msg = r.message.replace("|", "/")
        msg = msg if len(msg) <= 160 else msg[:157] + "..."
        lines.append(f"| {r.model} | {r.target} | {r.exit_code} | {_fmt(r.max_lsb, '.1f')} | {_fmt(r.sqnr_db, '.1f')} | "
                     f"{_fmt(agree, '.1f', ' %')} | {_fmt(r.speedup_b16, '.2f', 'x')} | {r.build_s:.0f} | {msg} |")
    return "\n".join(lines)
