"""report.json's ``timings``: every phase of a real build is accounted for, per target too."""

from __future__ import annotations

import json
from pathlib import Path

from qconvert.timings import TARGET_PHASES, Timings


def test_phases_add_up() -> None:
    t = Timings()
    t.add("simulation", 1.0, "onnx")
    t.add("simulation", 0.5, "onnx")
    with t.phase("capture"):
        pass
    j = t.entry()
    assert j.targets == {"onnx": {"simulation": 1.5}} and set(j.phases) == {"capture"}


def test_a_build_reports_where_its_time_went(onnx_build: Path) -> None:
    timings = json.loads((onnx_build / "report.json").read_text())["timings"]
    assert {"capture", "calibration", "float_reference", "layer_report", "total"} <= set(timings["phases"])
    onnx = timings["targets"]["onnx"]
    assert {"quantize", "emit", "runtime_run", "simulation"} <= set(onnx) <= set(TARGET_PHASES)
    assert sum(onnx.values()) <= timings["phases"]["total"]
