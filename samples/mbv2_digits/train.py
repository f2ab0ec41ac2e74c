"""Train the MobileNetV2-style digits sample; write weights.pt, calib.npz and eval.npz.

Same data and split as samples/digits (scikit-learn's bundled digits, 16x16, no
download); AdamW with weight decay 1e-4 as TI recommends for quantization.
Deterministic: seeds fixed, single thread. About a minute on 2 cores.

    python samples/mbv2_digits/train.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from model import build  # type: ignore[import-not-found]  # this folder's model, before digits/ joins the path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "digits"))
from train import digits_split, fit, report_held_out  # type: ignore[import-not-found]  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x, y, train_idx, eval_idx = digits_split()
    model = build()
    epochs = 40
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=epochs * ((len(train_idx) + 63) // 64))
    fit(model, opt, x[train_idx], y[train_idx], epochs, sched)
    report_held_out(model, x[eval_idx], y[eval_idx])
    torch.save(model.state_dict(), HERE / "weights.pt")
    np.savez_compressed(HERE / "calib.npz", x=x[train_idx[:256]], y=y[train_idx[:256]])
    np.savez_compressed(HERE / "eval.npz", x=x[eval_idx], y=y[eval_idx])


if __name__ == "__main__":
    main()
