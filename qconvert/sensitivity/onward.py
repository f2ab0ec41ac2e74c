"""Score recipe variants from the layer each one changes onward, not from the input.

A sensitivity variant (one layer kept in float, or only one layer quantized) computes
exactly what a reference graph computes up to the first node it changes: the same ops on
the same constants in the same order. So the reference graph is walked node by node over
each evaluation batch, and when the walk reaches the node where a variant first differs,
the variant runs from there on, fed the reference's values for every earlier node it still
reads. Its outputs, and so its score, are bit for bit those of running it from the input
(tested), at the cost of the part after the change.

Nodes are matched by position and by a signature of what they compute (op, target, the
positions of their inputs, literal arguments, and the bytes of every constant tensor), not
by name: two quantize runs name duplicated dequantize nodes differently. Memory is one
batch's live values of the reference plus one variant's, for a window of variants at a time
(each holds its quantized weights); the reference is walked once per window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.fx import GraphModule, Node

from qconvert.core.graph import attr_of
from qconvert.core.outputs import flatten
from qconvert.sensitivity.simulate import Evaluator, SimScore

__all__ = ["WINDOW", "constants", "divergence", "node_signatures", "score_onward", "windows"]

#: Variants scored per walk of the reference graph.
WINDOW = 8


def _tensor_digest(t: torch.Tensor) -> str:
    t = t.detach()
    if t.is_quantized:
        t = t.int_repr()
    data = t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return f"{tuple(t.shape)}{t.dtype}{hashlib.sha1(data).hexdigest()}"


def constants(gm: GraphModule) -> dict[Node, Any]:
    """The value of every node that reads no graph input (weights, their dequantization, scales), computed once."""
    values: dict[Node, Any] = {}
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            values[n] = attr_of(gm, str(n.target))
        elif n.op in ("call_function", "call_method") and all(a in values for a in n.all_input_nodes) and n.all_input_nodes:
            values[n] = _run_node(gm, n, values, {})
    return values


def _arg(a: Any, index: dict[Node, int], const: dict[Node, Any]) -> str:
    if isinstance(a, Node):
        if a in const:  # a constant: by its bytes, wherever the graph computes it
            value = const[a]
            return "@" + (_tensor_digest(value) if isinstance(value, torch.Tensor) else repr(value))
        return f"%{index[a]}" if a in index else f"?{a.name}"
    if isinstance(a, torch.Tensor):
        return _tensor_digest(a)
    if isinstance(a, (tuple, list)):
        return "(" + ",".join(_arg(x, index, const) for x in a) + ")"
    if isinstance(a, dict):
        return "{" + ",".join(f"{k}:{_arg(v, index, const)}" for k, v in sorted(a.items())) + "}"
    return repr(a)


def _module_digest(m: torch.nn.Module) -> str:
    """A submodule (torch.export's ``_guards_fn``): its class, its code if it is a graph, and its tensors."""
    code = m.code if isinstance(m, GraphModule) else ""
    tensors = ",".join(f"{k}={_tensor_digest(v)}" for k, v in m.state_dict().items())
    return f"{type(m).__qualname__}|{code}|{tensors}"


def _steps(gm: GraphModule, const: dict[Node, Any]) -> list[Node]:
    """The nodes that depend on the inputs, in graph order (constants are read where they are used: a Q/DQ graph
    computes every weight's dequantization at the top, so counting them would put every change at the start)."""
    return [n for n in gm.graph.nodes if n not in const]


def node_signatures(gm: GraphModule, const: dict[Node, Any] | None = None) -> list[str]:
    """One string per node that depends on the inputs, in graph order: what it computes, inputs by position,
    constants by their bytes."""
    const = constants(gm) if const is None else const
    index: dict[Node, int] = {}
    out = []
    for n in _steps(gm, const):
        index[n] = len(index)
        if n.op == "call_module":
            what = _module_digest(gm.get_submodule(str(n.target)))
        elif n.op == "placeholder":
            what = n.name
        else:
            what = str(n.target)
        out.append(f"{n.op}|{what}|{_arg(n.args, index, const)}|{_arg(n.kwargs, index, const)}")
    return out


def divergence(reference: list[str], variant: list[str]) -> int:
    """Position (among computing nodes) of the first node where ``variant`` computes something else than ``reference``."""
    for i, (a, b) in enumerate(zip(reference, variant)):
        if a != b:
            return i
    return min(len(reference), len(variant))


def _resolve(value: Any, env: dict[Node, Any], const: dict[Node, Any]) -> Any:
    return torch.fx.node.map_aggregate(value, lambda a: (const[a] if a in const else env[a]) if isinstance(a, Node) else a)


def _run_node(gm: GraphModule, n: Node, env: dict[Node, Any], const: dict[Node, Any]) -> Any:
    args, kwargs = _resolve(n.args, env, const), _resolve(n.kwargs, env, const)
    if n.op == "call_function":
        return n.target(*args, **kwargs)  # type: ignore[operator]  # fx types a call_function target as str too
    if n.op == "call_module":
        return gm.get_submodule(str(n.target))(*args, **kwargs)
    obj, *rest = args
    return getattr(obj, str(n.target))(*rest, **kwargs)


class _Variant:
    def __init__(self, gm: GraphModule, reference: list[str]) -> None:
        self.gm = gm
        self.const = constants(gm)
        self.nodes = _steps(gm, self.const)
        # an identical variant starts at its output node, which then reads the reference's values
        self.start = min(divergence(reference, node_signatures(gm, self.const)), len(self.nodes) - 1)
        self.inputs = {n: k for k, n in enumerate(n for n in self.nodes if n.op == "placeholder")}
        position = {n: i for i, n in enumerate(self.nodes)}
        # earlier values the part from ``start`` on reads: taken from the reference walk
        self.needs = sorted({position[a] for n in self.nodes[self.start:] for a in n.all_input_nodes
                             if a in position and position[a] < self.start})
        # each value is dropped after the last node that reads it, as the graph's own forward does: a variant
        # that starts early would otherwise hold every activation of the batch at once (17 GB on Lite1 at batch 64)
        last: dict[Node, Node] = {}
        for n in self.nodes[self.start:]:
            for a in n.all_input_nodes:
                last[a] = n
        self.dying: dict[Node, list[Node]] = {}
        for value, reader in last.items():
            self.dying.setdefault(reader, []).append(value)

    def run(self, fed: dict[int, Any], inputs: tuple[torch.Tensor, ...]) -> Any:
        env: dict[Node, Any] = {self.nodes[p]: fed[p] for p in self.needs}
        for n in self.nodes[self.start:]:
            if n.op == "output":
                return _resolve(n.args[0], env, self.const)
            env[n] = inputs[self.inputs[n]] if n.op == "placeholder" else _run_node(self.gm, n, env, self.const)
            for value in self.dying.get(n, ()):
                env.pop(value, None)
        raise ValueError("graph without output")


def _walk(reference: GraphModule, const: dict[Node, Any], inputs: tuple[torch.Tensor, ...], variants: list[_Variant]) -> list[Any]:
    """Each variant's output on ``inputs``, the reference run once up to the last divergence."""
    nodes = _steps(reference, const)
    position = {n: i for i, n in enumerate(nodes)}
    wanted: dict[int, list[int]] = {}  # reference position -> variants starting there
    for i, v in enumerate(variants):
        wanted.setdefault(v.start, []).append(i)
    keep_until: dict[int, int] = {}  # reference position -> the last position its value is read at
    for i, n in enumerate(nodes):
        for a in n.all_input_nodes:
            if a in position:
                keep_until[position[a]] = max(keep_until.get(position[a], 0), i)
    for v in variants:
        for p in v.needs:
            keep_until[p] = max(keep_until.get(p, 0), v.start)
    dying: dict[int, list[int]] = {}
    for p, last in keep_until.items():
        dying.setdefault(last, []).append(p)
    last_start = max(wanted)
    values: dict[int, Any] = {}
    env: dict[Node, Any] = {}
    results: list[Any] = [None] * len(variants)
    feed = iter(inputs)
    for i, n in enumerate(nodes):
        for k in wanted.get(i, ()):
            results[k] = variants[k].run(values, inputs)
        if i >= last_start or n.op == "output":
            break
        env[n] = next(feed) if n.op == "placeholder" else _run_node(reference, n, env, const)
        values[i] = env[n]
        for p in dying.get(i, ()):
            env.pop(nodes[p], None)
            values.pop(p, None)
    return results


@torch.no_grad()
def score_onward(evaluator: Evaluator, reference: GraphModule, variants: Sequence[GraphModule]) -> list[SimScore]:
    """``evaluator.score`` of every variant, each computed from where it first differs from ``reference``."""
    if not variants:
        return []
    const = constants(reference)
    ref = node_signatures(reference, const)
    prepared = [_Variant(v, ref) for v in variants]
    outputs: list[list[np.ndarray]] = [[] for _ in variants]
    for b in evaluator.batches:
        for k, out in enumerate(_walk(reference, const, b.inputs, prepared)):
            outputs[k].append(flatten(out)[0].numpy())
    return [evaluator.score_outputs(o) for o in outputs]


def windows(items: Sequence[Any], size: int = WINDOW) -> list[Sequence[Any]]:
    """``items`` in consecutive groups of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]
