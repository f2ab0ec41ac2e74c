"""PTQ at real-network scale (issue 20): bias correction, a whole build and sensitivity on the
pretrained EfficientNet-Lite of the real-model suite (zoo/), against NNCF in the same run.

1. Bias correction, old against new, on the digits and dwsep samples: the per-layer version
   qconvert had before (one data pass per corrected layer, bench/legacy_bias_correction.py)
   against the two-pass one and the analytic one (no data): SQNR and top-1 agreement with
   float of the torch simulation, and seconds.
2. EfficientNet-Lite (QCONVERT_BENCH_SCALE_MODEL, default efficientnet_lite1) with its ImageNet
   weights, calibrated on 256 photo views and scored on 512 views of other photos:
   qconvert calibrate, quantize, quantize with bias correction (two-pass, analytic), and
   ``nncf.quantize`` (torch.fx backend) with its fast and its full bias correction on the
   same calibration batches; seconds and agreement with float on the evaluation views.
   Then one whole ``qconvert build`` for onnx (no latency) with its report's timings, run as its own
   ``python -m qconvert build`` process (as a user runs it) so that it holds only what one build holds,
   not this process's float references and NNCF models too; its peak resident memory is printed.
3. Sensitivity over every layer of the same network (``rank_layers``: two variants per layer, each
   scored from the layer it changes onward), on QCONVERT_BENCH_SCALE_SENS_SAMPLES evaluation views
   (default 64); then on every QCONVERT_BENCH_SCALE_SENS_STRIDE-th layer (default 8) onward against
   from the input, with the time spent quantizing the variants apart.

Set QCONVERT_BENCH_SCALE_EVAL to score on fewer evaluation views (default 512).
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MODEL = os.environ.get("QCONVERT_BENCH_SCALE_MODEL", "efficientnet_lite1")
N_EVAL = int(os.environ.get("QCONVERT_BENCH_SCALE_EVAL", "512"))
SENS_SAMPLES = int(os.environ.get("QCONVERT_BENCH_SCALE_SENS_SAMPLES", "64"))
SENS_STRIDE = int(os.environ.get("QCONVERT_BENCH_SCALE_SENS_STRIDE", "8"))
BATCH = 64
RECIPE = ("weights: {bits: 8, mode: sym, granularity: per_channel}\nactivations: {bits: 8, mode: asym_u}\n"
          "calibration: {method: minmax, num_samples: 256, batch_size: 64}\non_unsupported: adapt\n")


def _agreement(refs: list[torch.Tensor], run: Callable[[torch.Tensor], torch.Tensor], inputs: list[torch.Tensor]) -> tuple[float, float]:
    from qconvert.verify.metrics import CompareAccumulator

    acc = CompareAccumulator()
    with torch.no_grad():
        for x, ref in zip(inputs, refs):
            out = run(x)
            acc.update(ref.numpy(), (out[0] if isinstance(out, (tuple, list)) else out).numpy())
    r = acc.result()
    return 100.0 * float(r.top1_agreement or 0.0), r.sqnr_db


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def old_vs_new() -> None:
    from bench.legacy_bias_correction import correct_biases as legacy
    from qconvert.core.capture import capture
    from qconvert.core.quantize import calibrate, quantize
    from qconvert.io.model import load_model
    from qconvert.recipe import recipe_from_text

    calib = torch.from_numpy(np.load(ROOT / "samples/digits/calib.npz")["x"])
    evals = [torch.from_numpy(np.load(ROOT / "samples/digits/eval.npz")["x"])]
    batches = lambda: [(calib[i:i + 64],) for i in range(0, len(calib), 64)]
    print("### Bias correction, old (one pass per layer) vs new (two passes) vs analytic, torch simulation vs float\n")
    print("| model | weights | none: SQNR dB / agree % | old | new | analytic | old s | new s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("digits", "dwsep"):
        model = load_model(f"{ROOT / 'samples' / name / 'model.py'}:build", str(ROOT / "samples" / name / "weights.pt"))
        cap = capture(model, (calib[:2],))
        with torch.no_grad():
            refs = [model(x) for x in evals]
        for weights in ("{bits: 5, mode: sym, granularity: per_tensor}", "{bits: 8, mode: sym, granularity: per_channel}"):
            plain = recipe_from_text(f"weights: {weights}\n")
            stats = calibrate(cap, plain, batches())
            old = quantize(cap, plain, stats).graph
            _, t_old = _timed(lambda: legacy(cap.graph, old, batches))  # noqa: B023
            new_recipe = recipe_from_text(f"weights: {weights}\nbias_correction: true\nbias_correction_samples: {len(calib)}\n")
            new, t_new = _timed(lambda: quantize(cap, new_recipe, stats, calibration_batches=batches).graph)  # noqa: B023
            analytic = quantize(cap, recipe_from_text(f"weights: {weights}\nbias_correction: analytic\n"), stats).graph
            cells = [_agreement(refs, g, evals) for g in (quantize(cap, plain, stats).graph, old, new, analytic)]  # type: ignore[arg-type]
            print(f"| {name} | {weights} | " + " | ".join(f"{s:.2f} / {a:.1f}" for a, s in cells) + f" | {t_old:.2f} | {t_new:.2f} |")


def _nncf(model: torch.nn.Module, calib: torch.Tensor, fast: bool) -> tuple[torch.nn.Module, float]:
    import nncf

    def go() -> torch.nn.Module:
        # NNCF 3.4's torch.fx backend fails on EfficientNet-Lite exported with a dynamic batch ("Function `isempty` is
        # not implemented for <class 'int'>"), so it gets the graph at the batch size it calibrates and is scored at
        fx = torch.export.export(model, (calib[:BATCH],)).module()
        items = [calib[i:i + BATCH] for i in range(0, len(calib), BATCH)]  # the same batches qconvert calibrates on
        return nncf.quantize(fx, nncf.Dataset(items), subset_size=len(items), fast_bias_correction=fast)

    q, t = _timed(go)
    return _padded(q), t  # type: ignore[arg-type]


def _padded(fixed: torch.nn.Module) -> torch.nn.Module:
    """A graph exported at batch BATCH, run on a smaller last batch by padding it with zeros."""

    class Padded(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            if n == BATCH:
                return fixed(x)
            out = fixed(torch.cat([x, x.new_zeros((BATCH - n, *x.shape[1:]))]))
            return (out[0] if isinstance(out, (tuple, list)) else out)[:n]

    return Padded()


def real_network() -> None:
    from qconvert.core.capture import capture
    from qconvert.core.quantize import calibrate, quantize
    from qconvert.recipe import recipe_from_text
    from zoo import models
    from zoo.data import arrays
    from zoo.registry import entry

    e = entry(MODEL)
    model = getattr(models, MODEL)()
    calib = torch.from_numpy(arrays(e.data, "calib")["x"])
    evals = list(torch.from_numpy(arrays(e.data, "eval", N_EVAL)["x"]).split(BATCH))
    with torch.no_grad():
        refs = [model(x) for x in evals]
    batches = lambda: [(calib[i:i + BATCH],) for i in range(0, len(calib), BATCH)]
    cap, t_cap = _timed(lambda: capture(model, (calib[:2],)))
    base = recipe_from_text(RECIPE)
    stats, t_cal = _timed(lambda: calibrate(cap, base, batches()))  # type: ignore[arg-type]
    rows: list[tuple[str, float, float, float]] = []
    for label, extra in (("qconvert PTQ", ""), ("qconvert + bias correction (two passes)", "bias_correction: true\n"),
                         ("qconvert + analytic bias correction", "bias_correction: analytic\n")):
        qm, t = _timed(lambda: quantize(cap, recipe_from_text(RECIPE + extra), stats, calibration_batches=batches))  # type: ignore[arg-type]  # noqa: B023
        agree, sqnr = _agreement(refs, qm.graph, evals)  # type: ignore[attr-defined]
        rows.append((label, t_cal + t, agree, sqnr))
    n_eval = sum(len(x) for x in evals)
    print(f"\n### {MODEL} (ImageNet weights), {len(calib)} calibration views, {n_eval} evaluation views of other photos\n")
    print(f"capture {t_cap:.1f} s; qconvert calibrate {t_cal:.1f} s (one pass, statistics for every tensor)\n")
    del qm  # the last quantized graph; each NNCF model below is dropped once scored
    for fast in (True, False):
        try:
            qnn, t = _nncf(model, calib, fast)
            agree, sqnr = _agreement(refs, qnn, evals)
            del qnn
            rows.append((f"NNCF nncf.quantize, {'fast' if fast else 'full'} bias correction", t, agree, sqnr))
        except Exception as err:  # noqa: BLE001  a peer failing is a result, not a crash of the bench
            print(f"NNCF ({'fast' if fast else 'full'}) failed: {type(err).__name__}: {str(err)[:120]}")
    gc.collect()
    print("| tool | calibration + quantization s | top-1 agreement with float % | SQNR dB |")
    print("|---|---|---|---|")
    for label, t, agree, sqnr in rows:
        print(f"| {label} | {t:.1f} | {agree:.1f} | {sqnr:.2f} |")
    bc = rows[1][1] - t_cal
    print(f"\nbias correction alone: {bc:.1f} s = {bc / t_cal:.2f}x qconvert calibrate")
    _whole_build(e, calib, sum(len(x) for x in evals))
    _sensitivity(cap, base, stats, model, evals)


def _whole_build(e: object, calib: torch.Tensor, n_eval: int) -> None:
    import json
    import resource
    import subprocess
    import sys

    from zoo.data import write_npz

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_npz(e.data, "calib", tmp / "calib.npz")  # type: ignore[attr-defined]
        write_npz(e.data, "eval", tmp / "eval.npz", n_eval)  # type: ignore[attr-defined]
        (tmp / "recipe.yaml").write_text("version: 1\n" + RECIPE + "bias_correction: true\n")
        cmd = [sys.executable, "-m", "qconvert", "build", "--model", f"{ROOT / 'zoo' / 'models.py'}:{MODEL}",
               "--recipe", str(tmp / "recipe.yaml"), "--calib-data", str(tmp / "calib.npz"), "--eval-data", str(tmp / "eval.npz"),
               "--target", "onnx", "--out", str(tmp / "out"), "--no-latency", "--quiet"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        p, t = _timed(lambda: subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False))
        # ru_maxrss of the children waited for so far: the build is the only child this bench starts
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        if p.returncode != 0:  # type: ignore[attr-defined]
            print(f"\nwhole build (onnx, bias correction, no latency) exit {p.returncode} after {t:.1f} s: "  # type: ignore[attr-defined]
                  f"{(p.stderr.strip().splitlines() or [''])[-1][:200]}")  # type: ignore[attr-defined]
            return
        report = json.loads((tmp / "out" / "report.json").read_text())
    onnx = report["targets"]["onnx"]
    print(f"\nwhole build (onnx, bias correction, no latency, its own process): {t:.1f} s, peak resident memory "
          f"{peak_gb:.1f} GB; onnx artifact top-1 agreement with float "
          f"{100 * (onnx['vs_float']['top1_agreement'] or 0):.1f} %, SQNR {onnx['vs_float']['sqnr_db']:.2f} dB")
    print("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in report["timings"]["phases"].items())
          + "; onnx: " + ", ".join(f"{k} {v:.1f}" for k, v in report["timings"]["targets"]["onnx"].items()))


def _sensitivity(cap: object, recipe: object, stats: object, model: torch.nn.Module, evals: list[torch.Tensor]) -> None:
    from qconvert.core.quantize import quantize
    from qconvert.sensitivity.rank import rank_layers
    from qconvert.sensitivity.simulate import Evaluator
    from qconvert.sensitivity.variants import candidate_layers

    x = torch.cat(evals)[:SENS_SAMPLES].numpy()
    with tempfile.TemporaryDirectory() as d:
        np.savez(Path(d) / "e.npz", x=x)
        from qconvert.io.data import open_dataset

        data = open_dataset(Path(d) / "e.npz", ("x",), None)
        evaluator = Evaluator(model, data, BATCH)
    types = {n: type(m).__name__ for n, m in model.named_modules()}
    layers = candidate_layers(cap.graph, types)  # type: ignore[attr-defined]
    quant = lambda r: quantize(cap, r, stats)
    sens, t = _timed(lambda: rank_layers(recipe, layers, quant, evaluator))  # type: ignore[arg-type]
    print(f"\nsensitivity over every layer, each variant from the layer it changes onward: {len(layers)} layers x 2 variants "
          f"on {SENS_SAMPLES} views: {t:.1f} s ({t / max(1, 2 * len(layers) + 1):.2f} s per variant); most fragile: "
          f"{sens.by_loss()[0].layer.name}")  # type: ignore[attr-defined]
    # before/after on every SENS_STRIDE-th layer (the whole from-input run would double the section's time)
    picked = layers[::SENS_STRIDE]
    timed_quant = _QuantTimer(quant)
    onward, t_on = _timed(lambda: rank_layers(recipe, picked, timed_quant, evaluator))  # type: ignore[arg-type]
    q_on, timed_quant.seconds = timed_quant.seconds, 0.0
    direct, t_direct = _timed(lambda: rank_layers(recipe, picked, timed_quant, evaluator, onward=False))  # type: ignore[arg-type]
    same = onward.entry() == direct.entry()  # type: ignore[attr-defined]
    print(f"every {SENS_STRIDE}-th layer ({len(picked)} layers, {2 * len(picked) + 1} variants): from the changed layer onward "
          f"{t_on:.1f} s (quantize {q_on:.1f} s, scoring {t_on - q_on:.1f} s), from the input {t_direct:.1f} s (quantize "
          f"{timed_quant.seconds:.1f} s, scoring {t_direct - timed_quant.seconds:.1f} s); scoring "
          f"{(t_direct - timed_quant.seconds) / max(1e-9, t_on - q_on):.2f}x faster; identical figures: {same}")


class _QuantTimer:
    """A quantize function that adds up its own time (quantizing each variant is not what ``onward`` speeds up)."""

    def __init__(self, fn: Callable[[object], object]) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, recipe: object) -> object:
        out, t = _timed(lambda: self.fn(recipe))
        self.seconds += t
        return out


def run() -> None:
    old_vs_new()
    real_network()


if __name__ == "__main__":
    run()
