"""Edge runtime latency at batch 1 on ResNet-18: each artifact against float in the same runtime.

- tflite: the tflite target's full-integer .tflite vs a float .tflite that litert-torch
  converts from the same model, in the same LiteRT interpreter with the same thread count.
- tvm: the tvm target's library (ONNX QDQ through TVM Relax, default pipeline, no tuning)
  vs the float ONNX compiled the same way, in the same Relax VM.
- torch float (eager) is printed as the common reference.

Random weights and inputs (speed only). This machine is shared and noisy, so the two
sides of each ratio run interleaved (qconvert.verify.timing: blocks in turn, 10th percentile).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

REPS = {"tflite": 30, "tvm": 5, "torch": 20}
# One thread everywhere: on this shared 2-core machine, two OpenMP threads spin against other
# load (torch ResNet-18 measured 836 ms at 2 threads, 120 ms at 1). Untuned TVM code has no
# parallel loops, so its thread pool does not matter here.
THREADS = 1


def _interleaved(a: Callable[[], object], b: Callable[[], object], reps: int) -> tuple[float, float]:
    """ms of ``a`` and ``b`` timed in turn (qconvert.verify.timing), about ``reps`` calls of each per round."""
    from qconvert.verify.timing import interleaved_ms

    a(), b()
    start = time.perf_counter()
    a(), b()
    budget = 8 * reps * (time.perf_counter() - start)
    ms = interleaved_ms({"a": a, "b": b}, budget_s=budget)
    return ms["a"], ms["b"]


def _quantized(model: object, target_name: str) -> object:
    import torch

    from qconvert.core.capture import capture
    from qconvert.core.quantize import calibrate, quantize
    from qconvert.recipe.model import Recipe
    from qconvert.targets.registry import TargetRegistry

    target = TargetRegistry().get(target_name)
    recipe = Recipe()  # per-channel sym weights, asym_u activations (tflite stores them as int8)
    g = torch.Generator().manual_seed(0)
    calib = [torch.randn(8, 3, 224, 224, generator=g) for _ in range(4)]
    cap = capture(model, (calib[0][:2],))  # type: ignore[arg-type]
    options = target.parse_options({})
    return quantize(cap, recipe, calibrate(cap, recipe, [(b,) for b in calib]), target.constraints(options), target.name,
                    target.placement(options))


def _tflite_row(model: object, x: object, work: Path) -> tuple[float, float]:
    import litert_torch
    import numpy as np
    from qconvert_tflite import TFLiteTarget
    from qconvert_tflite.export import quiet_litert
    from qconvert_tflite.options import TFLiteOptions
    from qconvert_tflite.runtime import load, run_loaded

    art = TFLiteTarget().emit(_quantized(model, "tflite"), work, TFLiteOptions())  # type: ignore[arg-type]
    with quiet_litert():
        (work / "float.tflite").write_bytes(litert_torch.convert(model, (x,)).model_content())  # type: ignore[arg-type]
    xs = [np.asarray(x)]
    q, f = load(art.path, THREADS), load(work / "float.tflite", THREADS)
    return _interleaved(lambda: run_loaded(q, xs), lambda: run_loaded(f, xs), REPS["tflite"])


def _tvm_row(model: object, x: object, work: Path) -> tuple[float, float]:
    import numpy as np
    import torch
    import tvm
    from qconvert_tvm import TvmTarget
    from qconvert_tvm.compile import compile_onnx
    from qconvert_tvm.target_spec import parse_target
    from tvm import relax

    target = TvmTarget()
    art = target.emit(_quantized(model, "tvm"), work, target.parse_options({}))  # type: ignore[arg-type]
    float_dir = work / "float"
    float_dir.mkdir()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)  # type: ignore[arg-type]
    assert program is not None
    compile_onnx(program.model_proto, parse_target("llvm"), float_dir, "float.so", None)
    q = relax.VirtualMachine(tvm.runtime.load_module(str(art.path)), tvm.cpu())
    f = relax.VirtualMachine(tvm.runtime.load_module(str(float_dir / "float.so")), tvm.cpu())
    arg = tvm.runtime.tensor(np.asarray(x))
    return _interleaved(lambda: q["main"](arg), lambda: f["main"](arg), REPS["tvm"])


def run() -> None:
    import torch

    from bench.models import resnet18

    model = resnet18()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        rows, eager = _measure(model, x)
    finally:
        torch.set_num_threads(saved_threads)
    print(f"ResNet-18, batch 1, 224x224, {THREADS} thread(s); ms (10th percentile), int8 and float interleaved in the same runtime\n")
    print("| runtime | int8 ms | float ms (same runtime) | int8 speed-up vs float | int8 vs torch float eager |")
    print("|---|---|---|---|---|")
    for name, q_ms, f_ms in rows:
        print(f"| {name} | {q_ms:.1f} | {f_ms:.1f} | {f_ms / q_ms:.2f}x | {eager / q_ms:.2f}x |")
    print(f"| torch (eager, float) | - | {eager:.1f} | - | - |")


def _measure(model: object, x: object) -> tuple[list[tuple[str, float, float]], float]:
    import torch

    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for name, fn in (("tflite", _tflite_row), ("tvm", _tvm_row)):
            work = Path(tmp) / name
            work.mkdir()
            try:
                rows.append((name, *fn(model, x, work)))
            except ImportError as e:
                print(f"({name}: skipped, {e.name} is not installed)")
        eager, _ = _interleaved(lambda: model(x), lambda: None, REPS["torch"])  # type: ignore[operator]
    return rows, eager
