"""The float "Clip model" TIDL imports: ranges as Clip operators, weights on their grid.

This is the form TI's QAT flow hands to TIDL (edgeai-modeloptimization
``v1/docs/qat.md``, PACT2): a float model whose every quantized activation is
followed by a Clip, so TIDL reads the range instead of calibrating
(``calibrationOption = 64`` / ``accuracy_level = 0``). It is derived from the
core's Q/DQ graph, so the ranges and weights are exactly the simulated ones:

* each activation ``quantize -> dequantize`` pair becomes ``clamp(lo, hi)`` with
  ``[lo, hi] = [(qmin - zp) * s, (qmax - zp) * s]``, the ends of the integer
  grid. TIDL rounds a range up to a power of two and divides it by 2**bits
  (``TIDL_GetMaxQuantScale``), which for these bounds gives back exactly ``s``
  (signed: 128*s; unsigned: 255*s rounds up to 256*s), and a zero lower bound
  makes it pick the unsigned form, as the simulation did;
* each weight and bias ``dequantize`` of a constant becomes the dequantized
  float constant, so TIDL's own weight quantization lands on the same grid.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.fx import GraphModule, Node

from qconvert.targets import arg_node, attr_of, module_of

__all__ = ["ClipRange", "activation_quantizers", "clip_model"]

qd = torch.ops.quantized_decomposed
_Q = (qd.quantize_per_tensor.default,)
_DQ = (qd.dequantize_per_tensor.default, qd.dequantize_per_channel.default)


@dataclass(frozen=True)
class ClipRange:
    """One activation's grid, as written into the Clip model; ``tensor`` is its key."""

    tensor: str
    scale: float
    zero_point: int
    qmin: int
    qmax: int

    @property
    def lo(self) -> float:
        return (self.qmin - self.zero_point) * self.scale

    @property
    def hi(self) -> float:
        return (self.qmax - self.zero_point) * self.scale

    @property
    def bits(self) -> int:
        return int(self.qmax - self.qmin).bit_length()


def activation_quantizers(gm: GraphModule) -> list[tuple[Node, ClipRange]]:
    """Every activation quantize node of a Q/DQ graph with its grid, in graph order."""
    out = []
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target in _Q:
            _, scale, zp, qmin, qmax, _dtype = n.args[:6]
            out.append((n, ClipRange(n.args[0].name, float(scale), int(zp), int(qmin), int(qmax))))
    return out


def clip_model(qgraph: GraphModule) -> tuple[GraphModule, list[ClipRange]]:
    """A float copy of ``qgraph`` with Clips at its quantizers and dequantized constants.

    The caller's graph is not modified.
    """
    gm = copy.deepcopy(qgraph)
    graph = gm.graph
    ranges: list[ClipRange] = []
    for q, rng in activation_quantizers(gm):
        with graph.inserting_after(q):
            clip = graph.call_function(torch.ops.aten.clamp.default, (q.args[0], rng.lo, rng.hi))
        clip.name = f"clip_{arg_node(q, 0).name}"
        clip.meta = dict(arg_node(q, 0).meta)
        for dq in list(q.users):
            dq.replace_all_uses_with(clip)
            graph.erase_node(dq)
        graph.erase_node(q)
        ranges.append(rng)
    for n in list(graph.nodes):
        if n.op == "call_function" and n.target in _DQ and getattr(n.args[0], "op", None) == "get_attr":
            _replace_constant_dequantize(gm, n)
    graph.eliminate_dead_code()
    _drop_unused_attributes(gm)
    gm.recompile()
    return gm, ranges




def _value(gm: GraphModule, a: object) -> object:
    return attr_of(gm, a.target) if isinstance(a, Node) and a.op == "get_attr" else a


def _replace_constant_dequantize(gm: GraphModule, dq: Node) -> None:
    """Fold ``dequantize(int constant)`` into a float constant (a weight or bias on its grid)."""
    args = [_value(gm, a) for a in dq.args]
    with torch.no_grad():
        value = dq.target(*args, **dq.kwargs)  # type: ignore[operator]  # fx types a call_function target as str too
    name = _constant_name(gm, dq)
    gm.register_buffer(name, value.contiguous())
    with gm.graph.inserting_before(dq):
        const = gm.graph.get_attr(name)
    const.meta = dict(dq.meta)
    dq.replace_all_uses_with(const)
    gm.graph.erase_node(dq)


def _constant_name(gm: GraphModule, dq: Node) -> str:
    """``<module>_weight`` / ``<module>_bias`` after the layer that reads the constant."""
    user = next(iter(dq.users), None)
    if user is not None and dq in user.args[1:3]:
        layer = (module_of(user) or user.name).replace(".", "_")
        name = f"{layer}_{'weight' if user.args[1] is dq else 'bias'}"
        if not hasattr(gm, name):
            return name
    return f"{dq.name}_float"


def _drop_unused_attributes(gm: GraphModule) -> None:
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name in list(dict(gm.named_buffers(recurse=False))) + list(dict(gm.named_parameters(recurse=False))):
        if name not in used:
            delattr(gm, name)
    for name, value in list(vars(gm).items()):
        if isinstance(value, torch.Tensor) and name not in used and not name.startswith("_"):
            delattr(gm, name)
