"""Token ids reach TIDL's TFLite runtime model in the integer width its converter chose.

torch's ids are int64; litert-torch declares the TFLite inputs int32. TIDL's TFLite-vs-ONNX
check fed the int64 batch as it was and the build ended in an internal error.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from qconvert.cli import main

ROOT = Path(__file__).resolve().parents[3]
TEXT = ROOT / "samples" / "text"
STATIC = """version: 1
weights: {bits: 8, mode: sym, granularity: per_channel}
activations: {bits: 8, mode: asym_u}
calibration: {method: minmax, num_samples: 64, batch_size: 64}
on_unsupported: adapt
"""


def test_text_classifier_with_int64_ids_builds_for_tidl(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(STATIC)
    r = CliRunner().invoke(main, ["build", "--model", f"{TEXT / 'model.py'}:build", "--weights", str(TEXT / "weights.pt"),
                                  "--recipe", str(recipe), "--calib-data", str(TEXT / "calib.npz"),
                                  "--eval-data", str(TEXT / "eval.npz"), "--target", "tidl", "--out", str(tmp_path / "OUT"),
                                  "--no-latency"])
    assert r.exit_code in (0, 3), r.output
    tidl = json.loads((tmp_path / "OUT" / "report.json").read_text())["targets"]["tidl"]
    assert tidl["vs_float"]["top1_agreement"] > 0.9
