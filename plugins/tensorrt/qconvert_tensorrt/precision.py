"""Which layers TensorRT will run in int8, and which in FP16/FP32, read from the Q/DQ placement.

A prediction from TensorRT's documented fusion rules, not a measurement: a conv,
GEMM or matmul whose data and weight inputs come from DequantizeLinear runs
int8; ReLU-like activations and a residual add whose other input is quantized
fuse into it; its output is int8 where the fused group ends in a
QuantizeLinear. Every other compute layer runs in floating point. Where an
engine is built, TensorRT's own engine inspector output is written beside this.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from qconvert_tensorrt.export import constant_values

__all__ = ["LayerPrecision", "predict_precision", "summary_line", "write_precision"]

_INT8_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
_EPILOGUE = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish"}
_MOVEMENT = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "MaxPool", "Slice", "Concat", "Identity"}
_SKIP = {"QuantizeLinear", "DequantizeLinear", "Constant", "Shape", "Size"}


@dataclass(frozen=True)
class LayerPrecision:
    """One ONNX compute node and how TensorRT is expected to run it."""

    name: str
    op: str
    precision: str  # "int8", "fp16", "fp32", or "fused"
    output: str  # precision of what it writes: "int8", "fp16", "fp32", or "" when fused
    reason: str


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.consts = set(constant_values(model))
        self._const_memo: dict[str, bool] = {}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in model.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def from_dq(self, tensor: str) -> bool:
        p = self.producer.get(tensor)
        while p is not None and p.op_type == "Transpose":  # Transpose(DQ(W)) for a linear on 3-D input
            p = self.producer.get(p.input[0])
        return p is not None and p.op_type == "DequantizeLinear"

    def is_constant(self, tensor: str) -> bool:
        """Computable before any input arrives (TensorRT folds it)."""
        if tensor not in self._const_memo:
            p = self.producer.get(tensor)
            self._const_memo[tensor] = tensor in self.consts or (p is not None and all(self.is_constant(i) for i in p.input if i))
        return self._const_memo[tensor]

    def only_consumer(self, tensor: str) -> onnx.NodeProto | None:
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 else None


def predict_precision(model: onnx.ModelProto, fp16: bool) -> tuple[LayerPrecision, ...]:
    """One row per compute node in graph order (constant subgraphs and Q/DQ nodes excluded)."""
    g = _Graph(model)
    flt = "fp16" if fp16 else "fp32"
    fused: dict[str, str] = {}
    rows: list[LayerPrecision] = []
    for n in model.graph.node:
        if n.op_type in _SKIP or all(g.is_constant(i) for i in n.input if i):
            continue
        if n.name in fused:
            rows.append(LayerPrecision(n.name, n.op_type, "fused", "", f"fused into {fused[n.name]}"))
        elif n.op_type in _INT8_OPS and all(g.from_dq(i) for i in n.input[:2]):
            group = _epilogue(g, n)
            fused.update({m.name: n.name for m in group})
            last = (group[-1] if group else n).output[0]
            users = g.consumers.get(last, [])
            out = "int8" if users and all(u.op_type == "QuantizeLinear" for u in users) else flt
            why = "inputs and weights quantized (Q/DQ)" + (f", fuses {', '.join(m.op_type for m in group)}" if group else "")
            rows.append(LayerPrecision(n.name, n.op_type, "int8", out, why + ("" if out == "int8" else f"; output {flt}: no Q after it")))
        elif n.op_type in _MOVEMENT and any(g.from_dq(i) for i in n.input):
            rows.append(LayerPrecision(n.name, n.op_type, "int8", "int8", "data movement on an int8 tensor (Q/DQ propagate through it)"))
        else:
            reason = "inputs not quantized" if n.op_type in _INT8_OPS else "no Q/DQ around it: no int8 kernel chosen"
            rows.append(LayerPrecision(n.name, n.op_type, flt, flt, reason + ("; FP16 fallback allowed" if fp16 else "")))
    return tuple(rows)


def _epilogue(g: _Graph, n: onnx.NodeProto) -> list[onnx.NodeProto]:
    """Nodes TensorRT fuses after a quantized conv/GEMM: bias add, residual add with a quantized
    other input, and pointwise activations, each the single consumer of the previous one."""
    group: list[onnx.NodeProto] = []
    tensor = n.output[0]
    while (c := g.only_consumer(tensor)) is not None:
        if c.op_type == "Add":
            other = next((i for i in c.input if i != tensor), "")
            if not (g.is_constant(other) or g.from_dq(other)):
                break
        elif c.op_type not in _EPILOGUE:
            break
        group.append(c)
        tensor = c.output[0]
    return group


def summary_line(rows: tuple[LayerPrecision, ...]) -> str:
    counts = Counter(r.precision for r in rows)
    parts = [f"{counts[p]} {p}" for p in ("int8", "fused", "fp16", "fp32") if counts[p]]
    return "layer precision (predicted from the Q/DQ placement, see tensorrt/layers.md): " + ", ".join(parts)


def write_precision(rows: tuple[LayerPrecision, ...], directory: Path, engine_built: bool) -> None:
    """layers.json (machine-readable) and layers.md (a table for people)."""
    (directory / "layers.json").write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    source = "TensorRT's own view is in engine_layers.json" if engine_built else "no engine was built, so nothing here is measured"
    lines = [
        "# TensorRT layer precision (predicted)",
        "",
        f"From the Q/DQ placement and TensorRT's documented fusion rules; {source}.",
        "",
        "| layer | op | runs in | writes | why |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r.name} | {r.op} | {r.precision} | {r.output or '-'} | {r.reason} |" for r in rows]
    (directory / "layers.md").write_text("\n".join(lines) + "\n")
