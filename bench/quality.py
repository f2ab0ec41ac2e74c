"""Accuracy of every range method x bits x granularity x mode, from one calibration pass.

Distiller-style table on samples/digits and the depthwise-separable samples/dwsep:
each cell is top-1 % of the quantized simulation (the Q/DQ graph every artifact is
checked against) on the 500 held-out digits. Weights and activations use the same
bit width; 'sym' is symmetric weights and activations, 'asym' unsigned asymmetric.
All cells come from one statistics pass per model: only quantize() runs per cell.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.io.model import load_model
from qconvert.recipe import recipe_from_text

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["minmax", "avg", "ema", "n_std", "aciq_gauss", "aciq_laplace", "percentile", "entropy", "mse"]
SAMPLES = {"digits": ROOT / "samples/digits", "dwsep": ROOT / "samples/dwsep"}


def _accuracy(logits: torch.Tensor, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(logits.argmax(1).numpy() == labels))


def table(name: str, folder: Path) -> None:
    model = load_model(f"{folder / 'model.py'}:build", str(folder / "weights.pt"))
    calib = torch.from_numpy(np.load(ROOT / "samples/digits/calib.npz")["x"])
    z = np.load(ROOT / "samples/digits/eval.npz")
    x, y = torch.from_numpy(z["x"]), z["y"]
    cap = capture(model, (calib[:2],))
    base = recipe_from_text("version: 1\n")
    stats = calibrate(cap, base, [(calib[i : i + 64],) for i in range(0, len(calib), 64)])
    with torch.no_grad():
        float_acc = _accuracy(model(x), y)
    print(f"\n{name}: float {float_acc:.2f} %  (cells: top-1 % of the int simulation; logits layer never clipped)\n")
    print("| bits | mode | weights | " + " | ".join(METHODS) + " |")
    print("|---|---|---|" + "---|" * len(METHODS))
    last = "fc" if name == "digits" else "fc"
    for bits in (8, 6, 4):
        for mode in ("sym", "asym"):
            for gran in ("per_tensor", "per_channel"):
                wmode, amode = ("sym", "sym") if mode == "sym" else ("asym_u", "asym_u")
                cells = []
                for method in METHODS:
                    recipe = recipe_from_text(
                        f"weights: {{bits: {bits}, mode: {wmode}, granularity: {gran}}}\n"
                        f"activations: {{bits: {bits}, mode: {amode}}}\n"
                        f"calibration: {{method: {method}}}\nno_clip: [{last}]\n"
                    )
                    qm = quantize(cap, recipe, stats)
                    with torch.no_grad():
                        cells.append(f"{_accuracy(qm.graph(x), y):.1f}")
                print(f"| {bits} | {mode} | {gran} | " + " | ".join(cells) + " |", flush=True)


def run() -> None:
    for name, folder in SAMPLES.items():
        table(name, folder)


if __name__ == "__main__":
    run()
