"""Latency of the QDQ artifact vs the float model, both in onnxruntime, and how many
compute nodes onnxruntime actually ran in int8 after its QDQ fusions."""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import onnx

__all__ = ["FLOAT_COMPUTE_OPS", "INT8_OPS", "count_int8_nodes", "session_ms"]

INT8_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QLinearAdd", "QLinearMul", "QGemm",
    "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu",
    "QLinearSoftmax", "QLinearReduceMean", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention",
})
FLOAT_COMPUTE_OPS = frozenset({
    "Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "Add", "Mul", "Sub", "Div",
    "ReduceMean", "GlobalAveragePool", "AveragePool", "Softmax", "Sigmoid", "Tanh", "LayerNormalization", "Gelu",
})


def _session(model: bytes | str, optimized_path: str | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_path:
        opts.optimized_model_filepath = optimized_path
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def session_ms(models: dict[str, bytes | str], feeds: dict[str, np.ndarray], budget_s: float = 1.0) -> dict[str, float]:
    """Ms of one run per model, the 10th percentile of runs with the models timed in turn (``interleaved_ms``)."""
    from qconvert.targets import interleaved_ms

    sessions = {name: _session(m) for name, m in models.items()}
    return interleaved_ms({name: partial(sess.run, None, feeds) for name, sess in sessions.items()}, budget_s)


def count_int8_nodes(model: bytes | str) -> tuple[int, int, tuple[str, ...]]:
    """(int8 compute nodes, float compute nodes, float op types) in onnxruntime's optimized graph."""
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "optimized.onnx")
        _session(model, optimized_path=path)
        optimized = onnx.load(path)
    ops = [n.op_type for n in optimized.graph.node]
    floats = [o for o in ops if o in FLOAT_COMPUTE_OPS]
    return sum(o in INT8_OPS for o in ops), len(floats), tuple(sorted(set(floats)))
