"""Quantization-aware training on the digits sample: PTQ at 4 bits, then a short QAT fine-tune.

Post-training calibration at 4-bit weights and activations loses many points on this
CNN; a short QAT fine-tune, started from that calibration and run in an ordinary
training loop with a small learning rate, wins them back. Prints float, PTQ and QAT
held-out accuracy and the CPU time of the fine-tune, and writes the QAT checkpoint:

    python samples/digits/qat.py --out digits.qat.pt
    qconvert build --model digits.qat.pt --eval-data samples/digits/eval.npz --target onnx --out OUT

Deterministic for a given --seed: seeds fixed, one thread.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from model import build  # type: ignore[import-not-found]
from train import digits_split, fit  # type: ignore[import-not-found]

import qconvert.qat
from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.recipe import recipe_from_text

HERE = Path(__file__).parent
EPOCHS, WARMUP_EPOCHS, LR, BATCH = 30, 2, 1e-3, 64

# 4-bit weights (symmetric, per channel) and activations (unsigned) everywhere but the first
# layer's weights and the classifier (its input, weights and logits), kept at 8 bits as QAT
# papers do (PACT, LSQ). Ranges: learned step sizes (LSQ), started from the min/max calibration;
# BatchNorm folded and frozen from the start (the float model's statistics are good); the
# logits' observed range stops moving for the last epochs.
RECIPE = """
version: 1
weights: {bits: 4, mode: sym, granularity: per_channel}
activations: {bits: 4, mode: asym_u}
calibration: {method: minmax, batch_size: 64}
no_clip: [fc]
overrides:
  - {match: stem, weights: {bits: 8, mode: sym, granularity: per_channel}}
  - {match: pool, activations: {bits: 8, mode: asym_u}}
  - match: fc
    weights: {bits: 8, mode: sym, granularity: per_channel}
    activations: {bits: 8, mode: asym_u}
qat:
  activation_ranges: lsq
  weight_ranges: minmax
  freeze_bn_after: 0
  freeze_ranges_after: 525
"""


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: np.ndarray) -> float:
    with torch.no_grad():
        return 100.0 * float(np.mean(model(x).argmax(1).numpy() == y))


def train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> None:
    """An ordinary training loop, nothing QAT-specific: SGD with momentum, warmup, cosine decay."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    per_epoch = math.ceil(len(x) / BATCH)
    steps, warmup = epochs * per_epoch, WARMUP_EPOCHS * per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    fit(model, opt, x, y, epochs, torch.optim.lr_scheduler.LambdaLR(opt, factor), BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("digits.qat.pt"), help="QAT checkpoint to write (.pt)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ranges", choices=("lsq", "pact", "ema"), default="lsq", help="how activation ranges train (qat.activation_ranges)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    x, y, train_idx, _ = digits_split()
    calib = torch.from_numpy(np.load(HERE / "calib.npz")["x"])
    held_out = np.load(HERE / "eval.npz")
    xe, ye = torch.from_numpy(held_out["x"]), held_out["y"]

    model = build()
    model.load_state_dict(torch.load(HERE / "weights.pt", weights_only=True))
    model.eval()
    recipe = recipe_from_text(RECIPE.replace("activation_ranges: lsq", f"activation_ranges: {args.ranges}"))

    # PTQ: one calibration pass, then the Q/DQ graph a build would emit
    captured = capture(model, (calib[:2],))
    stats = calibrate(captured, recipe, [(calib[i : i + BATCH],) for i in range(0, len(calib), BATCH)])
    ptq = quantize(captured, recipe, stats)

    # QAT from the same calibration
    qat_model = qconvert.qat.prepare(model, recipe, calib[:2], calibration=stats)
    start = time.process_time()
    train(qat_model, x[train_idx], y[train_idx], args.epochs, args.lr)
    cpu = time.process_time() - start
    qat_model.eval()
    qconvert.qat.save(qat_model, args.out)

    float_acc, ptq_acc, qat_acc = accuracy(model, xe, ye), accuracy(ptq.graph, xe, ye), accuracy(qat_model, xe, ye)
    print(f"float     {float_acc:6.2f} %")
    print(f"PTQ w4a4  {ptq_acc:6.2f} %  ({ptq_acc - float_acc:+.2f} pp)")
    print(f"QAT w4a4  {qat_acc:6.2f} %  ({qat_acc - float_acc:+.2f} pp; {args.ranges} ranges, {args.epochs} epochs, {cpu:.0f} s CPU)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
