"""Small helpers to read an exported aten graph: op categories and module names."""

from __future__ import annotations

import torch
from torch.fx import GraphModule, Node

__all__ = ["OpKind", "arg_float", "arg_int", "arg_node", "module_names_of_graph", "module_of", "op_kind"]

aten = torch.ops.aten

_WEIGHTED = {
    aten.conv1d.default, aten.conv2d.default, aten.conv3d.default,
    aten.conv1d.padding, aten.conv2d.padding, aten.conv3d.padding,
    aten.linear.default,
}
_FUSED_ACT = {aten.relu.default, aten.relu_.default, aten.hardtanh.default, aten.hardtanh_.default, aten.relu6.default}
_BINARY = {aten.add.Tensor, aten.add_.Tensor, aten.mul.Tensor, aten.mul_.Tensor}
_MATMUL = {aten.matmul.default, aten.bmm.default, aten.mm.default}
_POOL_OWN = {aten.adaptive_avg_pool2d.default, aten.avg_pool2d.default, aten.mean.dim, aten.mean.default}
_CAT = {aten.cat.default, aten.concat.default}
_PASS = {
    aten.max_pool2d.default, aten.flatten.using_ints, aten.view.default, aten.reshape.default,
    aten.permute.default, aten.transpose.int, aten.squeeze.dim, aten.squeeze.dims,
    aten.unsqueeze.default, aten.contiguous.default, aten.clone.default, aten.dropout.default,
    aten.pixel_shuffle.default, aten.upsample_nearest2d.vec,
}


#: Padding copies its input's values and adds zeros (or copies of edge values), so it keeps its input's
#: integer grid: 0.0 lies on every grid qconvert makes. A non-zero constant would need its own range.
_PAD = {aten.pad.default, aten.constant_pad_nd.default}


def _pads_with_zeros_or_copies(node: Node) -> bool:
    if node.target == aten.constant_pad_nd.default:
        value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0.0)
        return value in (0, 0.0)
    mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
    value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
    return mode != "constant" or value in (None, 0, 0.0)


class OpKind:
    WEIGHTED = "weighted"
    FUSED_ACT = "fused_act"
    BINARY = "binary"
    MATMUL = "matmul"
    POOL = "pool"
    CAT = "cat"
    PASS = "pass"
    OTHER = "other"


def op_kind(node: Node) -> str:
    if node.op != "call_function":
        return OpKind.OTHER
    t = node.target
    if t in _PAD:
        return OpKind.PASS if _pads_with_zeros_or_copies(node) else OpKind.OTHER
    for kind, table in (
        (OpKind.WEIGHTED, _WEIGHTED), (OpKind.FUSED_ACT, _FUSED_ACT), (OpKind.BINARY, _BINARY),
        (OpKind.MATMUL, _MATMUL), (OpKind.POOL, _POOL_OWN), (OpKind.CAT, _CAT), (OpKind.PASS, _PASS),
    ):
        if t in table:
            return kind
    return OpKind.OTHER


def module_of(node: Node) -> str:
    """The fully qualified name of the innermost module that produced ``node``."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return path.replace("L['self'].", "").replace("L__self___", "")


def module_names_of_graph(gm: GraphModule) -> list[str]:
    names: set[str] = set()
    for n in gm.graph.nodes:
        stack = n.meta.get("nn_module_stack") or {}
        for path, _ in stack.values():
            names.add(path.replace("L['self'].", "").replace("L__self___", ""))
    names.discard("")
    return sorted(names)


def is_float_tensor(node: object) -> bool:
    if not isinstance(node, Node):
        return False
    val = node.meta.get("val")
    return isinstance(val, torch.Tensor) and val.is_floating_point()


def attr_of(gm: torch.nn.Module, target: object) -> torch.Tensor:
    """The tensor a ``get_attr`` node with this target (a dotted path in ``gm``) reads."""
    obj: object = gm
    for part in str(target).split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, torch.Tensor):
        raise TypeError(f"graph attribute '{target}' is not a tensor")
    return obj


def arg_node(node: Node, i: int) -> Node:
    """``node.args[i]`` where the op's schema puts a tensor: a graph node (fx types every argument as the
    ``Argument`` union, so this is where a graph that breaks the schema is caught, by name)."""
    a = node.args[i]
    if not isinstance(a, Node):
        raise TypeError(f"graph node '{node.name}': argument {i} is {type(a).__name__}, not a graph node")
    return a


def arg_int(node: Node, i: int, name: str = "", default: int | None = None) -> int:
    """An integer argument of ``node`` (positional ``i``, else keyword ``name``, else ``default``)."""
    a = node.args[i] if len(node.args) > i else node.kwargs.get(name, default)
    if not isinstance(a, int):
        raise TypeError(f"graph node '{node.name}': argument {name or i} is {type(a).__name__}, not an int")
    return a


def arg_float(node: Node, i: int) -> float:
    """A number argument of ``node`` (a scale, an epsilon) as a float."""
    a = node.args[i]
    if not isinstance(a, (int, float)):
        raise TypeError(f"graph node '{node.name}': argument {i} is {type(a).__name__}, not a number")
    return float(a)
