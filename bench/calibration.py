"""Calibration cost: qconvert's one-pass statistics vs torchao PT2E observers and
onnxruntime's quantize_static calibrators, on the same 256 inputs (batch 16).

Each measurement runs in its own process so peak memory (ru_maxrss growth over
the process's state just before calibration) is not polluted by the others.
Time is reported as the overhead ratio: calibration wall time / plain float
forward time of the same model on the same batches, measured in the same process
with float and calibration batches interleaved (this machine is noisy).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

N_INPUTS = int(os.environ.get("QCONVERT_BENCH_INPUTS", "256"))
BATCH = 16
OURS = ["ours:minmax+hist"]
PEERS = ["torchao:MinMax", "torchao:Histogram", "ort:MinMax", "ort:Entropy", "ort:Percentile"]
MODELS = ["resnet18", "mobilenet_v2"]


def _batches(seed: int = 0) -> Iterator["object"]:
    import torch

    g = torch.Generator().manual_seed(seed)
    for _ in range(N_INPUTS // BATCH):
        yield torch.randn(BATCH, 3, 224, 224, generator=g)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _float_time(model: "object", batches: list["object"]) -> float:
    import torch

    with torch.no_grad():
        model(batches[0][:2])  # type: ignore[operator, index]
        start = time.perf_counter()
        for b in batches:
            model(b)  # type: ignore[operator]
    return time.perf_counter() - start


def _worker(model_name: str, method: str) -> dict[str, float]:
    import torch

    from bench import models

    torch.manual_seed(0)
    model = getattr(models, model_name)()
    family, kind = method.split(":")
    if family == "ort":
        return _ort(model, kind)
    from qconvert.core.capture import capture
    from qconvert.core.policy import QuantPolicy
    from qconvert.core.quantize import _observers, _prepare
    from qconvert.recipe.model import Recipe

    example = next(_batches())[:2]  # type: ignore[index]
    cap = capture(model, (example,))
    recipe = Recipe()
    if family == "torchao":
        prepared = _torchao_prepared(cap, recipe, kind)
    else:
        prepared, _ = _prepare(cap, QuantPolicy(recipe))
    float_s = calib_s = 0.0
    base = _maxrss_mb()
    with torch.no_grad():
        model(example)
        for b in _batches():
            float_s += _timed(model, b)
            calib_s += _timed(prepared, b)
        start = time.perf_counter()
        if family == "torchao":
            for m in prepared.modules():
                if hasattr(m, "calculate_qparams") and m.__class__.__name__ != "QObserver":
                    m.calculate_qparams()
        else:
            from qconvert.core.ranges import choose_range

            for o in _observers(prepared):
                if o.spec.role == "activation":
                    choose_range(o.running.snapshot(), o.spec, recipe.calibration)
        calib_s += time.perf_counter() - start
    return {"float_s": float_s, "calib_s": calib_s, "peak_mb": _maxrss_mb() - base}


def _timed(fn: "object", b: "object") -> float:
    start = time.perf_counter()
    fn(b)  # type: ignore[operator]
    return time.perf_counter() - start


def _torchao_prepared(cap: "object", recipe: "object", kind: str) -> "object":
    import copy
    import warnings

    from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    from qconvert.core.annotate import QConvertQuantizer
    from qconvert.core.policy import QuantPolicy

    observer = HistogramObserver if kind == "Histogram" else MinMaxObserver

    class TorchaoObservers(QConvertQuantizer):
        """Same placement as ours, torchao's own observers on activations."""

        def make_spec(self, tq):  # type: ignore[no-untyped-def]
            spec = super().make_spec(tq)
            if tq.role == "weight":
                return spec
            return QuantizationSpec(dtype=spec.dtype, observer_or_fake_quant_ctr=observer, quant_min=spec.quant_min,
                                    quant_max=spec.quant_max, qscheme=spec.qscheme)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_pt2e(copy.deepcopy(cap.graph), TorchaoObservers(QuantPolicy(recipe)))  # type: ignore[attr-defined]


def _ort(model: "object", kind: str) -> dict[str, float]:
    import numpy as np
    import torch
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, quantize_static

    tmp = Path(tempfile.mkdtemp())
    example = next(_batches())[:2]  # type: ignore[index]
    torch.onnx.export(model, (example,), str(tmp / "f.onnx"), input_names=["x"], dynamic_axes={"x": {0: "n"}}, dynamo=False)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = (b.numpy() for b in _batches())  # type: ignore[attr-defined]

        def get_next(self):  # type: ignore[no-untyped-def]
            x = next(self.it, None)
            return None if x is None else {"x": x}

    float_s = sum(_timed(model, b) for b in _batches())
    base = _maxrss_mb()
    start = time.perf_counter()
    quantize_static(str(tmp / "f.onnx"), str(tmp / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    calibrate_method=getattr(CalibrationMethod, kind), per_channel=False)
    calib_s = time.perf_counter() - start
    _ = np
    return {"float_s": float_s, "calib_s": calib_s, "peak_mb": _maxrss_mb() - base}


def _measure(model_name: str, method: str) -> dict[str, float] | str:
    proc = subprocess.run([sys.executable, "-m", "bench.calibration", model_name, method], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"failed: {last[:120]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run() -> None:
    print(f"{N_INPUTS} random inputs 3x224x224, batch {BATCH}; overhead = calibration time / float forward time (same process)")
    print("| model | method | calib s | float s | overhead | peak MiB | time vs ours | memory vs ours |")
    print("|---|---|---|---|---|---|---|---|")
    for model_name in MODELS:
        ours = _measure(model_name, OURS[0])
        for method in OURS + PEERS:
            r = ours if method in OURS else _measure(model_name, method)
            if isinstance(r, str) or isinstance(ours, str):
                print(f"| {model_name} | {method} | {r if isinstance(r, str) else ours} | | | | | |", flush=True)
                continue
            tr = r["calib_s"] / ours["calib_s"]
            mr = r["peak_mb"] / max(ours["peak_mb"], 1.0)
            print(f"| {model_name} | {method} | {r['calib_s']:.1f} | {r['float_s']:.1f} | {r['calib_s'] / r['float_s']:.2f}x "
                  f"| {r['peak_mb']:.0f} | {tr:.2f}x | {mr:.1f}x |", flush=True)


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1], sys.argv[2])))
