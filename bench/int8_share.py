"""Share of a Q/DQ ONNX model's multiply-accumulates that onnxruntime can run in int8.

A Conv, Gemm or MatMul counts as int8 when its input and its weight both come from a
DequantizeLinear of an 8-bit tensor and its output goes into a QuantizeLinear to 8 bits
(through a Relu or Clip, which onnxruntime folds into that QuantizeLinear):
the pattern onnxruntime's QDQ transformer fuses into an integer kernel (QLinearConv,
QGemm, MatMulIntegerToFloat). Anything else (a layer kept in float, 16-bit Q/DQ, a missing
quantizer) runs in float. MACs come from the shapes onnx's shape inference gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

_EIGHT = {2, 3}  # TensorProto UINT8, INT8


@dataclass(frozen=True)
class Int8Share:
    """MACs of a model and how many of them run in int8."""

    macs: int
    int8_macs: int

    @property
    def share(self) -> float:
        return self.int8_macs / self.macs if self.macs else 0.0


def int8_share(path: Path) -> Int8Share:
    """The MACs of ``path`` (per sample) and the part of them in int8 kernels."""
    import onnx
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in
              [*graph.value_info, *graph.output, *graph.input]}

    def qtype(node) -> int | None:  # type: ignore[no-untyped-def]  # an onnx NodeProto
        """The integer type a Q/DQ node converts to or from (its zero point's; uint8 when it has none)."""
        if len(node.input) > 2 and node.input[2] in inits:
            return int(inits[node.input[2]].data_type)
        if len(node.input) > 2 and node.input[2] in producer and producer[node.input[2]].op_type == "Constant":
            return int(producer[node.input[2]].attribute[0].t.data_type)
        return 2 if len(node.input) <= 2 else None

    def eight_bit_in(name: str) -> bool:
        dq = producer.get(name)
        return dq is not None and dq.op_type == "DequantizeLinear" and qtype(dq) in _EIGHT

    def weight_shape(name: str) -> list[int] | None:
        node = producer.get(name)
        src = node.input[0] if node is not None and node.op_type == "DequantizeLinear" else name
        if src in inits:
            return list(inits[src].dims)
        return shapes.get(src)

    total = int8 = 0
    for n in graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul") or len(n.input) < 2:
            continue
        out, w = shapes.get(n.output[0]), weight_shape(n.input[1])
        if not out or not w or any(d <= 0 for d in out[1:]):
            continue
        per_out = math.prod(w[1:]) if n.op_type == "Conv" else w[0] if n.op_type == "MatMul" else w[-1]
        macs = math.prod(out[1:]) * per_out
        total += macs
        outq = consumers.get(n.output[0], [])
        if len(outq) == 1 and outq[0].op_type in ("Relu", "Clip"):  # onnxruntime folds these into the QuantizeLinear after them
            outq = consumers.get(outq[0].output[0], [])
        if (eight_bit_in(n.input[0]) and eight_bit_in(n.input[1]) and len(outq) == 1
                and outq[0].op_type == "QuantizeLinear" and qtype(outq[0]) in _EIGHT):
            int8 += macs
    return Int8Share(total, int8)
