"""Latency of the QDQ artifact vs the float model, both in onnxruntime, and how many
compute nodes onnxruntime actually ran in int8 after its QDQ fusions."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

__all__ = ["median_ms", "interleaved_median_ms", "count_int8_nodes", "INT8_OPS", "FLOAT_COMPUTE_OPS"]

INT8_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QLinearAdd", "QLinearMul", "QGemm",
    "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu",
    "QLinearSoftmax", "QLinearReduceMean", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention",
})
FLOAT_COMPUTE_OPS = frozenset({
    "Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "Add", "Mul", "Sub", "Div",
    "ReduceMean", "GlobalAveragePool", "AveragePool", "Softmax", "Sigmoid", "Tanh", "LayerNormalization", "Gelu",
})


def _session(model: bytes | str, optimized_path: str | None = None):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_path:
        opts.optimized_model_filepath = optimized_path
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def median_ms(model: bytes | str, feeds: dict[str, np.ndarray], min_runs: int = 5, budget_s: float = 1.0) -> float:
    """Median wall time of one run, after a warm-up, over at least ``min_runs`` runs."""
    sess = _session(model)
    sess.run(None, feeds)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget_s and len(times) < 50):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def interleaved_median_ms(models: dict[str, bytes | str], feeds: dict[str, np.ndarray], rounds: int = 7) -> dict[str, float]:
    """Median ms per model, timing the models in turn each round, so load changes on a
    shared machine hit all of them alike (a sequential A-then-B timing does not)."""
    sessions = {name: _session(m) for name, m in models.items()}
    for sess in sessions.values():
        sess.run(None, feeds)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, sess in sessions.items():
            t = time.perf_counter()
            sess.run(None, feeds)
            times[name].append((time.perf_counter() - t) * 1000.0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def count_int8_nodes(model: bytes | str) -> tuple[int, int, tuple[str, ...]]:
    """(int8 compute nodes, float compute nodes, float op types) in onnxruntime's optimized graph."""
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "optimized.onnx")
        _session(model, optimized_path=path)
        optimized = onnx.load(path)
    ops = [n.op_type for n in optimized.graph.node]
    floats = [o for o in ops if o in FLOAT_COMPUTE_OPS]
    return sum(o in INT8_OPS for o in ops), len(floats), tuple(sorted(set(floats)))
