"""The MobileNetV2-style sample (samples/mbv2_digits) built for TIDL with its own TIDL recipe (slow: ~1 min)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from qconvert.cli import main

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "samples" / "mbv2_digits"


@pytest.mark.slow
def test_mbv2_builds_runs_and_the_prediction_is_exact(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    args = ["build", "--model", f"{SAMPLE / 'model.py'}:build", "--weights", str(SAMPLE / "weights.pt"),
            "--recipe", str(SAMPLE / "recipe.yaml"), "--calib-data", str(SAMPLE / "calib.npz"),
            "--eval-data", str(SAMPLE / "eval.npz"), "--target", "tidl", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    d = out / "tidl"
    for name in ("model_clip.onnx", "model_clip_b1.onnx", "model_clip.tflite", "tidl_import_config.txt",
                 "compile_options_onnxrt.json", "compile_options_tflitert.json", "compile_options_tvmdlr.json"):
        assert (d / name).is_file(), name
    z = np.load(SAMPLE / "eval.npz")
    (logits,) = ort.InferenceSession(str(d / "model_clip.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": z["x"]})
    clip_acc = 100.0 * float(np.mean(logits.argmax(1) == z["y"]))
    t = json.loads((out / "report.json").read_text())["targets"]["tidl"]
    assert t["accuracy"] == pytest.approx(clip_acc)
    pred = t["checks"]["device_prediction"]
    assert pred["exactness"]["mismatches_vs_tidl_rounding_torch"] == 0
    float_acc, build = pred["rows"][0]["accuracy"], pred["rows"][-1]["accuracy"]
    assert float_acc - build <= 1.0
    assert t["checks"]["lint"] == []  # modules for every ReLU6 and add, BN after every conv
    assert t["checks"]["tflite_vs_onnx_max_abs"] < 1e-4
