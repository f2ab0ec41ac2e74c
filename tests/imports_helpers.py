"""Shared checks for the bring-your-own-QAT tests: build from a source model, compare with its forward."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from qat_sources import DIGITS, held_out

from qconvert.cli import main

EVAL = DIGITS / "eval.npz"
#: Six targets; each builds, or refuses in one line naming the rule.
TARGETS = ("onnx", "tflite", "pytorch", "tvm", "tensorrt", "tidl")
#: Beyond a target's own tolerance (artifact vs our simulation): the source runs float biases and
#: float accumulation where integer targets use int32 biases, so a value sitting on a rounding
#: boundary may flip by one step in a layer; over this 7-layer net that adds up to 2 output steps.
SOURCE_SLACK_LSB = 2.0


def build(model: str, out: Path, targets: tuple[str, ...], *extra: str) -> tuple[int, str]:
    args = ["build", "--model", model, "--eval-data", str(EVAL), "--out", str(out), "--no-latency", *extra]
    for t in targets:
        args += ["--target", t]
    r = CliRunner().invoke(main, args)
    if r.exit_code == 1:  # an internal error: show it, with its cause
        raise AssertionError(r.output) from r.exception
    return r.exit_code, r.output


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def source_outputs(model: torch.nn.Module) -> np.ndarray:
    x, _ = held_out()
    with torch.no_grad():
        return model(x).numpy()


def assert_artifact_matches_source(out: Path, target: str, expected: np.ndarray) -> float:
    """The artifact's outputs on held-out data, in its own runtime (its golden run over all of eval),
    within its tolerance (+ SOURCE_SLACK_LSB) of the source model's fake-quant forward."""
    entry = report(out)["targets"][target]
    step = entry["parity_step"]
    vs_source = entry["vs_float"]  # the build's reference is the source model's own forward
    assert vs_source["samples"] == expected.shape[0]
    err = vs_source["max_abs_error"] / step
    assert err <= entry["tolerance_lsb"] + SOURCE_SLACK_LSB, (target, err, entry["tolerance_lsb"])
    assert vs_source["top1_agreement"] >= 0.99, (target, vs_source)
    return err


def assert_target_contract(out: Path, target: str, expected: np.ndarray) -> None:
    """What every built target of an imported model owes: where it keeps every imported grid, its artifact
    within its tolerance (+ SOURCE_SLACK_LSB) of the source model's forward. Where it re-encodes grids, a
    step count against the source means nothing (a grid's step or clamp changed), so instead: each changed
    tensor named in one note, the artifact within its tolerance of its own (re-encoded) simulation (the
    build's parity gates), and top-1 agreement with the source."""
    rep = report(out)
    entry = rep["targets"][target]
    changed = entry["imported_grid"]["changed"]
    if entry["executed"] and not changed and entry["parity_step"]:
        assert_artifact_matches_source(out, target, expected)
        return
    assert sum(n.startswith("grid changed:") for n in entry["notes"]) == len(changed), entry["notes"]
    parity = [c for c in rep["gates"]["checks"] if c["target"] == target and "parity" in c["metric"]]
    assert all(c["passed"] for c in parity), parity
    assert entry["vs_float"]["top1_agreement"] >= 0.98, entry["vs_float"]


def refusal(text: str, target: str) -> str:
    """The one error line of a refused build (a model factory may print lines of its own)."""
    errors = [line for line in text.strip().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"target '{target}'" in errors[0] and "Traceback" not in text, text
    return errors[0]


def _fail_on_data(*args: object, **kwargs: object) -> None:
    raise AssertionError("an observer saw data: an imported build must not calibrate")


@pytest.fixture
def no_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any observer update, or a calibration pass, fails the test."""
    from qconvert.core import observer

    monkeypatch.setattr(observer.RunningStats, "update", _fail_on_data)
    monkeypatch.setattr("qconvert.pipeline.calibrate", _fail_on_data)
