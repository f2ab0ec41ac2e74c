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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.fx import GraphModule

if TYPE_CHECKING:
    from qconvert.verify.metrics import Comparison

__all__ = ["Quantized", "compare", "quantized", "score"]

#: The first views scored on their own too: they are easier than the rest (README, "all 512 views").
FIRST = 128


@dataclass(frozen=True)
class Quantized:
    """A zoo network quantized with a recipe, and the evaluation views with the float model's logits on them."""

    name: str
    graph: GraphModule
    views: list[torch.Tensor]
    float_logits: list[np.ndarray]
    quantize_s: float


def quantized(recipe_path: Path, views: int, name: str) -> Quantized:
    """``name`` quantized with ``recipe_path`` from the zoo's calibration views, and ``views`` evaluation views
    in batches of 64 with the float logits on them."""
    from qconvert.core.capture import capture
    from qconvert.core.quantize import calibrate, quantize
    from qconvert.recipe import recipe_from_text
    from zoo import data, models
    from zoo.registry import entry

    spec = entry(name).data
    model = getattr(models, name)().eval()
    calib = torch.from_numpy(data.arrays(spec, "calib")["x"])
    xs = list(torch.from_numpy(data.arrays(spec, "eval", views)["x"]).split(64))
    with torch.no_grad():
        refs = [model(x).numpy() for x in xs]
    recipe = recipe_from_text(recipe_path.read_text())
    size = recipe.calibration.batch_size

    def batches() -> list[tuple[torch.Tensor]]:
        return [(calib[i:i + size],) for i in range(0, len(calib), size)]

    start = time.perf_counter()
    captured = capture(model, (calib[:2],))
    qm = quantize(captured, recipe, calibrate(captured, recipe, batches()), calibration_batches=batches)
    return Quantized(name, qm.graph, xs, refs, time.perf_counter() - start)


def compare(gm: GraphModule, q: Quantized, first: int | None = None) -> Comparison:
    """``gm`` (``q.graph`` or a variant of it) against float on the evaluation views, or on the first ``first`` of them."""
    from qconvert.verify.metrics import CompareAccumulator

    acc, seen = CompareAccumulator(), 0
    with torch.no_grad():
        for x, ref in zip(q.views, q.float_logits):
            if first is not None and seen + len(x) > first:
                break
            out = gm(x)
            acc.update(ref, (out[0] if isinstance(out, (tuple, list)) else out).numpy())
            seen += len(x)
    return acc.result()


def score(recipe_path: Path, views: int, name: str) -> list[str]:
    """One line per view set: agreement, SQNR and the seconds quantize took."""
    q = quantized(recipe_path, views, name)
    lines = []
    for label, res in ((f"first {FIRST}", compare(q.graph, q, FIRST)), (f"all {views}", compare(q.graph, q))):
        lines.append(f"{name}, {recipe_path.name}, {label} views: {100 * float(res.top1_agreement or 0):.1f} % | "
                     f"{res.sqnr_db:.2f} dB (quantize {q.quantize_s:.0f} s)")
    return lines


if __name__ == "__main__":
    torch.set_num_threads(1)
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: python -m bench.recipe_sim RECIPE.yaml [views] [model]")
    for line in score(Path(args[0]), int(args[1]) if len(args) > 1 else 512, args[2] if len(args) > 2 else "efficientnet_lite1"):
        print(line)
