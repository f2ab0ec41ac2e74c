"""ONNX graph rewrites that let onnxruntime run more of the QDQ model in int8.

torch.onnx exports ``adaptive_avg_pool2d(x, 1)`` as ReduceMean over H and W, which
onnxruntime runs in float between DequantizeLinear and QuantizeLinear. The same
computation as GlobalAveragePool fuses into QLinearGlobalAveragePool.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

__all__ = ["reduce_mean_to_global_pool"]


def _axes(node: onnx.NodeProto, consts: dict[str, list[int]]) -> list[int] | None:
    for a in node.attribute:
        if a.name == "axes":
            return list(a.ints)
    if len(node.input) > 1:
        return consts.get(node.input[1])
    return None


def _keepdims(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "keepdims"), 1)


def reduce_mean_to_global_pool(model: onnx.ModelProto) -> int:
    """Replace 4-D ReduceMean over axes (2, 3) with keepdims=1 by GlobalAveragePool; returns the count."""
    consts: dict[str, list[int]] = {i.name: numpy_helper.to_array(i).astype(int).tolist() for i in model.graph.initializer
                                    if i.data_type == onnx.TensorProto.INT64}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == onnx.TensorProto.INT64:
                    consts[n.output[0]] = numpy_helper.to_array(a.t).astype(int).reshape(-1).tolist()
    replaced = 0
    nodes = list(model.graph.node)
    for i, n in enumerate(nodes):
        if n.op_type != "ReduceMean" or _keepdims(n) != 1:
            continue
        axes = _axes(n, consts)
        if axes is None or sorted(a % 4 for a in axes) != [2, 3]:
            continue
        pool = helper.make_node("GlobalAveragePool", [n.input[0]], list(n.output), name=f"{n.name}_as_global_pool")
        model.graph.node.remove(n)
        model.graph.node.insert(i, pool)
        replaced += 1
    return replaced
