"""Parity at depth: end-to-end vs per-layer difference of onnx and tflite artifacts from the simulation.

MobileNetV2 and ResNet-18 (random weights, randomized BatchNorm, 3x96x96) and the 39-deep
depthwise residual test net (``qconvert.testing.deep``): each is calibrated on 64 random
inputs, built per target, and compared on 32 others: end to end (output steps, plain
simulation vs artifact) and per layer (each quantized tensor vs the simulation of that layer
fed the runtime's inputs, ``qconvert.verify.layer_parity``). The end-to-end bound is
``qconvert.verify.gates.end_to_end_bound`` for the target's tolerance at that depth.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

CALIB, EVAL, SIZE = 64, 32, 96
RECIPE = "version: 1\nactivations: {mode: asym_u}\ncalibration: {batch_size: 16}\non_unsupported: adapt\n"


def _models() -> dict[str, tuple[torch.nn.Module, tuple[int, ...]]]:
    from bench.models import mobilenet_v2, resnet18
    from qconvert.testing.deep import deep_net

    return {"mobilenet_v2": (mobilenet_v2(), (3, SIZE, SIZE)), "resnet18": (resnet18(), (3, SIZE, SIZE)),
            "deep_dw_resnet (test net)": (deep_net(), (3, 16, 16))}


def _row(name: str, target_name: str, model: torch.nn.Module, shape: tuple[int, ...], work: Path) -> str:
    from qconvert.core.capture import capture
    from qconvert.core.quantize import calibrate, quantize
    from qconvert.io.data import open_dataset
    from qconvert.recipe import recipe_from_text
    from qconvert.targets.registry import TargetRegistry
    from qconvert.verify.layer_parity import layer_parity

    target = TargetRegistry().get(target_name)
    if not target.available().ok:
        return f"| {name} | {target_name} | unavailable | | | | |"
    g = torch.Generator().manual_seed(0)
    calib = torch.randn(CALIB, *shape, generator=g)
    x = torch.randn(EVAL, *shape, generator=g)
    np.savez(work / "eval.npz", x=x.numpy())
    recipe = recipe_from_text(RECIPE)
    options = target.parse_options({})
    cap = capture(model, (calib[:2],))
    stats = calibrate(cap, recipe, [(calib[i : i + 16],) for i in range(0, CALIB, 16)])
    qm = quantize(cap, recipe, stats, target.constraints(options), target_name, target.placement(options))
    out = work / f"{name.split()[0]}-{target_name}"
    out.mkdir()
    artifact = target.emit(qm, out, options)
    tol = target.parity_tolerance_lsb if artifact.tolerance_lsb is None else artifact.tolerance_lsb
    got = target.run(artifact, {"x": x.numpy()})[0]
    with torch.no_grad():
        sim = qm.graph(x).numpy()
    step = qm.parity_steps()[0]
    e2e = float(np.abs(got - sim).max() / step) if step else float("nan")
    lp = layer_parity(target, artifact, qm, open_dataset(work / "eval.npz", ("x",), None), tol, 16, limit=EVAL)
    if lp is None:
        return f"| {name} | {target_name} | {e2e:.0f} | - | - | - | - |"
    ones = sum(1 for la in lp.layers if la.max_steps == 1.0)
    return (f"| {name} | {target_name} | {e2e:.0f} | {lp.max_steps:.0f} | {ones} of {lp.compared} | {lp.depth} | "
            f"{lp.end_to_end_bound_lsb:.1f} (tol {tol:g}) |")


def run() -> None:
    print(__doc__.split("\n\n")[1])
    print("\n| model | target | end to end (steps) | worst layer (steps) | layers 1 step off | depth | e2e bound |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for i, (name, (model, shape)) in enumerate(_models().items()):
            for j, target in enumerate(("onnx", "tflite")):
                work = Path(d) / f"{i}{j}"
                work.mkdir()
                print(_row(name, target, model, shape, work), flush=True)
