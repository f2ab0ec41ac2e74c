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

HERE = Path(__file__).parent


def digits_16x16() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    return x.numpy(), d.target.astype(np.int64)


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, train indices, held-out indices): the split every digits-based sample uses."""
    x, y = digits_16x16()
    order = np.random.default_rng(0).permutation(len(x))
    return x, y, order[:1297], order[1297:]


def fit(model: torch.nn.Module, opt: torch.optim.Optimizer, x: np.ndarray, y: np.ndarray, epochs: int,
        sched: torch.optim.lr_scheduler.LRScheduler | None = None, batch: int = 64) -> None:
    """Plain cross-entropy training in shuffled mini-batches (torch's global RNG shuffles)."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            b = perm[i : i + batch]
            loss = F.cross_entropy(model(xt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
    model.eval()


def report_held_out(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> None:
    with torch.no_grad():
        acc = (model(torch.from_numpy(x)).argmax(1).numpy() == y).mean()
    print(f"held-out accuracy: {100 * acc:.2f}% on {len(x)} samples")


def main() -> None:
    from model import build  # type: ignore[import-not-found]  # this folder's model (run as a script)

    torch.manual_seed(0)
    torch.set_num_threads(1)
    x, y, train_idx, eval_idx = digits_split()
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    fit(model, opt, x[train_idx], y[train_idx], epochs=30)
    report_held_out(model, x[eval_idx], y[eval_idx])
    torch.save(model.state_dict(), HERE / "weights.pt")
    np.savez_compressed(HERE / "calib.npz", x=x[train_idx[:256]], y=y[train_idx[:256]])
    np.savez_compressed(HERE / "eval.npz", x=x[eval_idx], y=y[eval_idx])


if __name__ == "__main__":
    main()
