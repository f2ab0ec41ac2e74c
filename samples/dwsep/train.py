"""Train the depthwise-separable digits sample; writes weights.pt.

Same data and split as samples/digits (scikit-learn's bundled digits, 16x16), so
it uses samples/digits/calib.npz and eval.npz.
Weight decay is off on purpose, as in many real checkpoints: BatchNorm folding then
leaves the depthwise layers with very uneven per-channel ranges.

    python samples/dwsep/train.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "digits"))
from train import digits_split, fit, report_held_out  # type: ignore[import-not-found]  # noqa: E402

_spec = importlib.util.spec_from_file_location("dwsep_model", HERE / "model.py")
assert _spec is not None and _spec.loader is not None
_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_model)
build = _model.build


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x, y, train_idx, eval_idx = digits_split()
    model = build()
    fit(model, torch.optim.Adam(model.parameters(), lr=3e-3), x[train_idx], y[train_idx], epochs=25)
    report_held_out(model, x[eval_idx], y[eval_idx])
    torch.save(model.state_dict(), HERE / "weights.pt")


if __name__ == "__main__":
    main()
