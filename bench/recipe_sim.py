"""One recipe on one zoo network, scored in the torch simulation: what exploring a recipe needs before
`make bench real` builds and runs it in onnxruntime (README "Real networks", 16-bit activations).

Quantizes ``model`` with ``recipe`` from the zoo's calibration views (adaround included: the slow part)
and compares the simulation with the float model on the first 128 and on all ``views`` evaluation views:
top-1 agreement and SQNR of the logits. No target, no export.

`python -m bench.recipe_sim zoo/recipe_a16.yaml [views=512] [model=efficientnet_lite1]`
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

__all__ = ["score"]

#: The first views scored on their own too: they are easier than the rest (README, "all 512 views").
FIRST = 128


def score(recipe_path: Path, views: int, name: str) -> list[str]:
    """One line per view set: agreement, SQNR and the seconds quantize took."""
    from qconvert.core.capture import capture
    from qconvert.core.quantize import calibrate, quantize
    from qconvert.recipe import recipe_from_text
    from qconvert.verify.metrics import CompareAccumulator
    from zoo import data, models
    from zoo.registry import entry

    spec = entry(name).data
    model = getattr(models, name)().eval()
    calib = torch.from_numpy(data.arrays(spec, "calib")["x"])
    xs = torch.from_numpy(data.arrays(spec, "eval", views)["x"])
    recipe = recipe_from_text(recipe_path.read_text())
    size = recipe.calibration.batch_size

    def batches() -> list[tuple[torch.Tensor]]:
        return [(calib[i:i + size],) for i in range(0, len(calib), size)]

    start = time.perf_counter()
    captured = capture(model, (calib[:2],))
    qm = quantize(captured, recipe, calibrate(captured, recipe, batches()), calibration_batches=batches)
    seconds = time.perf_counter() - start
    first, every = CompareAccumulator(), CompareAccumulator()
    with torch.no_grad():
        for i in range(0, len(xs), 64):
            x = xs[i:i + 64]
            ref, out = model(x), qm.graph(x)
            pair = (ref.numpy(), (out[0] if isinstance(out, (tuple, list)) else out).numpy())
            every.update(*pair)
            if i + len(x) <= FIRST:
                first.update(*pair)
    lines = []
    for label, acc in ((f"first {FIRST}", first), (f"all {views}", every)):
        res = acc.result()
        lines.append(f"{name}, {recipe_path.name}, {label} views: {100 * float(res.top1_agreement or 0):.1f} % | "
                     f"{res.sqnr_db:.2f} dB (quantize {seconds:.0f} s)")
    return lines


if __name__ == "__main__":
    torch.set_num_threads(1)
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: python -m bench.recipe_sim RECIPE.yaml [views] [model]")
    for line in score(Path(args[0]), int(args[1]) if len(args) > 1 else 512, args[2] if len(args) > 2 else "efficientnet_lite1"):
        print(line)
