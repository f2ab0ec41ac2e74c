"""Issue 19: fixed-point requantization on digits: multiplier bits 8, 16 and 32 vs exact float ratios.

Per width: accuracy of the torch simulation and of the onnx and tflite artifacts in their
runtimes, and how many tflite outputs differ from the simulation. With ``arithmetic: float`` the
simulation is the Q/DQ graph (float32 sums, rounding half to even), one step off LiteRT near a tie;
with ``arithmetic: fp32`` it computes each conv/linear as LiteRT's XNNPACK kernels do (``core.intarith``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "samples" / "digits"
#: (multiplier bits or None for exact ratios, requantize.arithmetic)
VARIANTS: tuple[tuple[int | None, str], ...] = ((None, "float"), (32, "float"), (16, "float"), (8, "float"),
                                                (32, "fp32"), (16, "fp32"), (8, "fp32"))


def _artifact_outputs(session: object, stats: object, target_name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(artifact outputs, simulation outputs, output step) of one target on ``x``."""
    from qconvert.core.quantize import quantize
    from qconvert.targets.registry import TargetRegistry
    from qconvert.targets.speed import choose

    t = TargetRegistry().get(target_name)
    opts = t.parse_options(None, "bench")
    c = t.constraints(opts)
    choice = choose(session.recipe, t.name, t.fast_types(opts), c, t.placement(opts))  # type: ignore[attr-defined]
    q = quantize(session.captured, choice.recipe, stats, c, t.name, choice.placement)  # type: ignore[attr-defined,arg-type]
    with tempfile.TemporaryDirectory() as d:
        art = t.emit(q, Path(d), opts)
        out = t.run(art, {art.input_names[0]: x})[0]
    with torch.no_grad():
        sim = q.simulation(torch.from_numpy(x)).numpy()
    return out, sim, float(q.parity_steps()[0] or 1.0)


def run() -> None:
    from qconvert.core.quantize import calibrate
    from qconvert.session import prepare_session, torch_batches

    z = np.load(DIGITS / "eval.npz")
    x, y = z["x"], z["y"]
    print("| requantize.multiplier_bits | arithmetic | simulation accuracy % | onnx accuracy % | tflite accuracy % | tflite outputs != simulation |")
    print("| --- | --- | --- | --- | --- | --- |")
    for bits, arithmetic in VARIANTS:
        with tempfile.TemporaryDirectory() as d:
            recipe = Path(d) / "recipe.yaml"
            key = "" if bits is None else f"requantize: {{multiplier_bits: {bits}, arithmetic: {arithmetic}}}\n"
            recipe.write_text((DIGITS / "recipe.yaml").read_text() + key)
            s = prepare_session(f"{DIGITS / 'model.py'}:build", recipe, DIGITS / "calib.npz", DIGITS / "weights.pt", None)
            assert s.calib is not None
            stats = calibrate(s.captured, s.recipe, torch_batches(s.calib, 64, 256))
            onnx_out, onnx_sim, _ = _artifact_outputs(s, stats, "onnx", x)
            tfl_out, tfl_sim, step = _artifact_outputs(s, stats, "tflite", x)
        acc = lambda o: 100.0 * float(np.mean(o.argmax(1) == y))
        differ = int((np.abs(tfl_out - tfl_sim) > step / 2).sum())
        print(f"| {bits or 'exact (float)'} | {arithmetic} | {acc(onnx_sim):.2f} | {acc(onnx_out):.2f} | {acc(tfl_out):.2f} | "
              f"{differ} of {tfl_out.size} (max {np.abs(tfl_out - tfl_sim).max() / step:.0f} step) |", flush=True)
    print(f"\n{len(y)} held-out digits samples")
