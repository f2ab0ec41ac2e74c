"""Rewrite the core's Q/DQ graph into the form litert-torch's static Q/DQ lowering reads.

The core folds quantized constants (``convert_pt2e(fold_quantize=True)``): an int8
weight feeds a dequantize. litert-torch fuses only quantize -> dequantize pairs into
TFLite quantized tensors, and derives int32 biases itself. So, on a copy:

- an int8 weight becomes float values w = (q - zp) * scale followed by the same
  quantize and dequantize; re-quantizing gives back exactly q (|q| <= 127);
- an int32 bias becomes its float value; the converter re-quantizes it with
  scale = input scale x weight scale, the scale the core gave it.

The rewritten graph computes exactly what the core's graph computes.
"""

from __future__ import annotations

import copy

import torch
from torch.fx import GraphModule, Node

from qconvert.targets import attr_of

__all__ = ["litert_ready"]

_qd = torch.ops.quantized_decomposed
_DEQUANT = {_qd.dequantize_per_channel.default: _qd.quantize_per_channel.default,
            _qd.dequantize_per_tensor.default: _qd.quantize_per_tensor.default}


def litert_ready(graph: GraphModule) -> GraphModule:
    """A copy of ``graph`` with quantized constants unfolded (weights) or dequantized (biases)."""
    gm = copy.deepcopy(graph)
    for node in list(gm.graph.nodes):
        src = node.args[0] if node.target in _DEQUANT else None
        if not isinstance(src, Node) or src.op != "get_attr":
            continue
        q = attr_of(gm, str(src.target))
        if q.is_floating_point():
            continue
        real = _dequantized(gm, node, q)
        name = f"_litert_float_{str(src.target).replace('.', '_')}"
        gm.register_buffer(name, real)
        with gm.graph.inserting_before(node):
            const = gm.graph.get_attr(name)
            if q.dtype == torch.int32:
                node.replace_all_uses_with(const)
                continue
            requant = gm.graph.call_function(_DEQUANT[node.target], (const, *node.args[1:]))
        node.replace_input_with(src, requant)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def _dequantized(gm: GraphModule, node: Node, q: torch.Tensor) -> torch.Tensor:
    if node.target == _qd.dequantize_per_channel.default:
        _, scale, zp, axis = node.args[:4]
        s, z = _value(gm, scale), _value(gm, zp)
        if not isinstance(axis, int):
            raise TypeError(f"dequantize_per_channel node '{node.name}' has a non-constant axis")
        shape = [1] * q.dim()
        shape[axis] = -1
        return ((q.double() - z.double().view(shape)) * s.double().view(shape)).float()
    _, scale, zp = node.args[:3]
    return ((q.double() - float(_value(gm, zp))) * float(_value(gm, scale))).float()


def _value(gm: GraphModule, arg: object) -> torch.Tensor:
    if isinstance(arg, Node):
        return attr_of(gm, str(arg.target))
    return torch.tensor(arg)

