"""Distiller statistics files (--qe-stats-file YAML) given as --stats: reused, nothing calibrated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from qat_sources import DIGITS, float_digits, train_data

from qconvert.cli import main


def _distiller_yaml(path: Path) -> dict:
    """Statistics as Distiller's QuantCalibrationStatsCollector records them (per module: inputs, output)."""
    model = float_digits().eval()
    x, _ = train_data()
    stats: dict[str, dict] = {}

    def record(t: torch.Tensor) -> dict:
        return {"min": float(t.min()), "max": float(t.max()), "avg_min": float(t.amin(dim=tuple(range(1, t.dim()))).mean()),
                "avg_max": float(t.amax(dim=tuple(range(1, t.dim()))).mean()), "mean": float(t.mean()), "std": float(t.std()),
                "b": float((t - t.mean()).abs().mean()), "shape": str(tuple(t.shape))}

    def hook(name: str):
        def fn(m: torch.nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            stats[name] = {"inputs": {0: record(inputs[0])}, "output": record(out)}
        return fn

    for name in ("stem.0", "stem.2", "block_conv1.2", "block_conv2.1", "block_relu", "dw.2", "pw.2", "pool", "fc"):
        model.get_submodule(name).register_forward_hook(hook(name))
    with torch.no_grad():
        model(x)
    path.write_text(yaml.safe_dump(stats))
    return stats


def test_distiller_stats_file_builds_without_calibration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stats = _distiller_yaml(tmp_path / "acts_quantization_stats.yaml")
    monkeypatch.setattr("qconvert.pipeline.calibrate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("calibrated")))
    out = tmp_path / "OUT"
    r = CliRunner().invoke(main, ["build", "--model", str(DIGITS / "model.py") + ":build", "--weights", str(DIGITS / "weights.pt"),
                                  "--recipe", str(DIGITS / "recipe.yaml"), "--stats", str(tmp_path / "acts_quantization_stats.yaml"),
                                  "--eval-data", str(DIGITS / "eval.npz"), "--target", "onnx", "--out", str(out), "--no-latency"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["calibration"]["ranges"] == "from stats file"
    manifest = json.loads((out / "onnx" / "manifest.json").read_text())
    fc = next(q for q in manifest["quantization"] if q["key"] == "linear")
    lo, hi = min(stats["fc"]["output"]["min"], 0.0), max(stats["fc"]["output"]["max"], 0.0)
    assert fc["scale_max"] == pytest.approx((hi - lo) / 255, rel=1e-5)  # uint8 over Distiller's min/max
    assert report["targets"]["onnx"]["vs_float"]["top1_agreement"] >= 0.98


def test_histogram_methods_are_refused_in_one_line(tmp_path: Path) -> None:
    _distiller_yaml(tmp_path / "s.yaml")
    (tmp_path / "r.yaml").write_text("version: 1\ncalibration: {method: entropy}\n")
    r = CliRunner().invoke(main, ["build", "--model", str(DIGITS / "model.py") + ":build", "--weights", str(DIGITS / "weights.pt"),
                                  "--recipe", str(tmp_path / "r.yaml"), "--stats", str(tmp_path / "s.yaml"),
                                  "--eval-data", str(DIGITS / "eval.npz"), "--target", "onnx", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "have no histogram, which range method entropy needs" in r.output, r.output
