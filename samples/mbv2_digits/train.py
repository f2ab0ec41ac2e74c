"""Train the MobileNetV2-style digits sample; write weights.pt, calib.npz and eval.npz.

Same data and split as samples/digits (scikit-learn's bundled digits, 16x16, no
download); AdamW with weight decay 1e-4 as TI recommends for quantization.
Deterministic: seeds fixed, single thread. About a minute on 2 cores.

    python samples/mbv2_digits/train.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from model import build  # type: ignore[import-not-found]
from sklearn.datasets import load_digits

HERE = Path(__file__).parent


def digits_16x16() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    return x.numpy(), d.target.astype(np.int64)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x, y = digits_16x16()
    order = np.random.default_rng(0).permutation(len(x))
    train_idx, eval_idx = order[:1297], order[1297:]
    model = build()
    epochs = 40
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=epochs * ((len(train_idx) + 63) // 64))
    xt, yt = torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx])
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            b = perm[i : i + 64]
            loss = F.cross_entropy(model(xt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(x[eval_idx])).argmax(1).numpy() == y[eval_idx]).mean()
    print(f"held-out accuracy: {100 * acc:.2f}% on {len(eval_idx)} samples")
    torch.save(model.state_dict(), HERE / "weights.pt")
    np.savez_compressed(HERE / "calib.npz", x=x[train_idx[:256]], y=y[train_idx[:256]])
    np.savez_compressed(HERE / "eval.npz", x=x[eval_idx], y=y[eval_idx])


if __name__ == "__main__":
    main()
