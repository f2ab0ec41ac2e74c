"""ONNX graph rewrites so onnxruntime runs the QDQ model as the simulation does.

- torch.onnx exports ``adaptive_avg_pool2d(x, 1)`` as ReduceMean over H and W, which
  onnxruntime runs in float between DequantizeLinear and QuantizeLinear. The same
  computation as GlobalAveragePool fuses into QLinearGlobalAveragePool.
- A layer the recipe keeps float (``exclude``) between quantized neighbours reads a
  DequantizeLinear and feeds a QuantizeLinear. onnxruntime's WeightBiasQuantization
  transformer then quantizes its float weights itself (per tensor) and runs it as
  QLinearConv: 2 output steps off the simulation on a test model. It only does so when
  that DequantizeLinear has a scalar scale, so the layer's own DequantizeLinear gets
  the same scale repeated per channel: the same values, and the layer stays float.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["keep_float_layers_float", "reduce_mean_to_global_pool"]


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


_WEIGHTED = {"Conv": 0, "ConvTranspose": 1, "Gemm": None}


def _input_channels(node: onnx.NodeProto, weight: np.ndarray) -> int:
    """Size of axis 1 of the layer's data input, from its weight's shape."""
    if node.op_type == "Conv":
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        return int(weight.shape[1] * groups)
    if node.op_type == "ConvTranspose":
        return int(weight.shape[0])
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return int(weight.shape[1] if trans_b else weight.shape[0])


def keep_float_layers_float(model: onnx.ModelProto) -> int:
    """Give each float-weight Conv/ConvTranspose/Gemm fed by a DequantizeLinear its own
    per-channel copy of that DequantizeLinear (one scale repeated); returns the count."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    producer = {o: n for n in g.node for o in n.output}

    def value(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        const = consts.get(name)
        return None if const is None else numpy_helper.to_array(next(a.t for a in const.attribute if a.name == "value"))

    kept = 0
    for node in list(g.node):
        if node.op_type not in _WEIGHTED or len(node.input) < 2:
            continue
        weight = value(node.input[1]) if node.input[1] not in producer or producer[node.input[1]].op_type == "Constant" else None
        dq = producer.get(node.input[0])
        if weight is None or weight.dtype != np.float32 or dq is None or dq.op_type != "DequantizeLinear":
            continue
        scale = value(dq.input[1])
        zero = value(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
        if scale is None or scale.size != 1:
            continue
        channels = _input_channels(node, weight)
        tag = f"{node.name or node.output[0]}_float_layer_input"
        names = [f"{tag}_scale"] + ([f"{tag}_zero_point"] if zero is not None else [])
        g.initializer.append(numpy_helper.from_array(np.full(channels, scale.reshape(()), np.float32), names[0]))
        if zero is not None:
            g.initializer.append(numpy_helper.from_array(np.full(channels, zero.reshape(()), zero.dtype), names[1]))
        own = helper.make_node("DequantizeLinear", [dq.input[0], *names], [f"{tag}_dq"], name=f"{tag}_dq", axis=1)
        g.node.insert(list(g.node).index(node), own)
        node.input[0] = own.output[0]
        kept += 1
    return kept
