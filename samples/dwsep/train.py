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

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "digits"))
from train import digits_16x16  # type: ignore[import-not-found]  # noqa: E402

_spec = importlib.util.spec_from_file_location("dwsep_model", HERE / "model.py")
assert _spec is not None and _spec.loader is not None
_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_model)
build = _model.build


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x, y = digits_16x16()
    order = np.random.default_rng(0).permutation(len(x))
    train_idx, eval_idx = order[:1297], order[1297:]
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx])
    for _ in range(25):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            b = perm[i : i + 64]
            loss = F.cross_entropy(model(xt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(x[eval_idx])).argmax(1).numpy() == y[eval_idx]).mean()
    print(f"held-out accuracy: {100 * acc:.2f}% on {len(eval_idx)} samples")
    torch.save(model.state_dict(), HERE / "weights.pt")


if __name__ == "__main__":
    main()
