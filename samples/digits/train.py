"""Train the digits sample and write weights.pt, calib.npz and eval.npz.

Data: scikit-learn's bundled digits (1797 8x8 images, no download), scaled to
[0, 1] and upsampled to 16x16. Deterministic: seeds fixed, single thread.

    python samples/digits/train.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from model import build  # type: ignore[import-not-found]

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
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx])
    for epoch in range(30):
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
    np.savez_compressed(HERE / "calib.npz", x=x[train_idx[:256]], y=y[train_idx[:256]])
    np.savez_compressed(HERE / "eval.npz", x=x[eval_idx], y=y[eval_idx])


if __name__ == "__main__":
    main()
