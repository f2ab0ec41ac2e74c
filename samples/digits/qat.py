"""Quantization-aware training on the digits sample: PTQ at 4 bits, then a short QAT fine-tune.

Post-training calibration at 4-bit weights and activations loses many points on this
CNN; a few epochs of QAT, started from that calibration and trained with a small
learning rate in a plain training loop, win them back. Prints float, PTQ and QAT
held-out accuracy and the CPU time of the fine-tune, and writes the QAT checkpoint:

    python samples/digits/qat.py --out digits.qat.pt
    qconvert build --model digits.qat.pt --eval-data samples/digits/eval.npz --target onnx --out OUT

Deterministic: seeds fixed, one thread.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from model import build  # type: ignore[import-not-found]
from train import digits_16x16  # type: ignore[import-not-found]

import qconvert.qat
from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.recipe import recipe_from_text

HERE = Path(__file__).parent

# 4-bit weights (symmetric, per channel) and activations (unsigned) everywhere but the
# classifier, kept at 8 bits as QAT papers keep the first and last layers (LSQ, PACT).
RECIPE = """
version: 1
weights: {bits: 4, mode: sym, granularity: per_channel}
activations: {bits: 4, mode: asym_u}
calibration: {method: minmax, batch_size: 64}
no_clip: [fc]
overrides:
  - match: fc
    weights: {bits: 8, mode: sym, granularity: per_channel}
    activations: {bits: 8, mode: asym_u}
qat:
  activation_ranges: lsq
  weight_ranges: minmax
  freeze_bn_after: 0
"""


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: np.ndarray) -> float:
    with torch.no_grad():
        return 100.0 * float(np.mean(model(x).argmax(1).numpy() == y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("digits.qat.pt"), help="QAT checkpoint to write (.pt)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--lr", type=float, default=LR)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)

    x, y = digits_16x16()
    train_idx = np.random.default_rng(0).permutation(len(x))[:1297]  # train.py's split
    xt, yt = torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx])
    calib = torch.from_numpy(np.load(HERE / "calib.npz")["x"])
    held_out = np.load(HERE / "eval.npz")
    xe, ye = torch.from_numpy(held_out["x"]), held_out["y"]

    model = build()
    model.load_state_dict(torch.load(HERE / "weights.pt", weights_only=True))
    model.eval()
    recipe = recipe_from_text(RECIPE)

    stats = calibrate(capture(model, (calib[:2],)), recipe, [(calib[i : i + 64],) for i in range(0, len(calib), 64)])
    ptq = quantize(capture(model, (calib[:2],)), recipe, stats)

    qat_model = qconvert.qat.prepare(model, recipe, calib[:2], calibration=stats)
    start = time.process_time()
    train(qat_model, xt, yt, args.epochs, args.lr)
    cpu = time.process_time() - start
    qat_model.eval()
    qconvert.qat.save(qat_model, args.out)

    print(f"float: {accuracy(model, xe, ye):.2f} %")
    print(f"PTQ w4a4: {accuracy(ptq.graph, xe, ye):.2f} %")
    print(f"QAT w4a4: {accuracy(qat_model, xe, ye):.2f} % ({args.epochs} epochs, {cpu:.0f} s CPU)")
    print(f"wrote {args.out}")


EPOCHS, LR, BATCH = 12, 3e-4, 64


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> None:
    """An ordinary training loop: AdamW with a cosine schedule, nothing QAT-specific."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    steps = epochs * -(-len(x) // BATCH)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), BATCH):
            batch = order[i : i + BATCH]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()


if __name__ == "__main__":
    main()
