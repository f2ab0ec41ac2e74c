"""Extra calibration observers, so every target's placement finds its statistics.

Calibration annotates the graph with the default placement, where a
data-movement op (flatten, view, transpose, max-pool) shares its input's
observer: its output has no statistics of its own. A placement that quantizes
right before a conv, linear, matmul or add (TensorRT's) may pick exactly such a
tensor, e.g. the flatten before the classifier. Every float graph output is
observed too: an output left in float (a second head, a feature map) is still
compared in the steps it would have as an activation. These observers read those
tensors and feed nothing, so the default observers see what they saw before and
their statistics are unchanged.
"""

from __future__ import annotations

from torch.fx import GraphModule, Node

from qconvert.core.graph import OpKind, is_float_tensor, module_of, op_kind
from qconvert.core.observer import QObserver
from qconvert.core.plan import TensorQuant
from qconvert.recipe.model import Recipe

__all__ = ["observe_consumed_tensors"]

_PREFIX = "qconvert_coverage_observer_"


def observe_consumed_tensors(prepared: GraphModule, recipe: Recipe, observed: set[str]) -> int:
    """Add an observer on every data input of a conv/linear/matmul/add that has no statistics key yet.

    Returns how many observers were added. Keys are node names, as for every activation.
    """
    # a shared observer is registered under several names; named_modules() would list it once
    modules = dict(prepared.named_modules(remove_duplicate=False))
    added = 0
    for tensor in _consumed_tensors(prepared, modules):
        if tensor.name in observed:
            continue
        spec = TensorQuant(tensor.name, "activation", module_of(tensor), recipe.activations)
        name = f"{_PREFIX}{added}"
        prepared.add_submodule(name, QObserver(spec, recipe.calibration))
        with prepared.graph.inserting_after(tensor):
            prepared.graph.call_module(name, (tensor,))
        observed.add(tensor.name)
        added += 1
    if added:
        prepared.recompile()
    return added


def _consumed_tensors(gm: GraphModule, modules: dict[str, object]) -> list[Node]:
    """Producers of the float data inputs of quantizable consumers, seen through observers."""
    found: dict[Node, None] = {}
    for node in gm.graph.nodes:
        if node.op == "output":
            outs = node.args[0] if isinstance(node.args[0], (list, tuple)) else [node.args[0]]
            for o in outs:
                src = _through_observers(o, modules)
                if isinstance(src, Node) and src.op == "call_function" and is_float_tensor(src):
                    found.setdefault(src, None)
            continue
        kind = op_kind(node)
        if kind == OpKind.WEIGHTED:
            args = node.args[:1]
        elif kind in (OpKind.MATMUL, OpKind.BINARY):
            args = node.args[:2]
        else:
            continue
        for a in args:
            src = _through_observers(a, modules)
            if isinstance(src, Node) and src.op in ("call_function", "placeholder") and is_float_tensor(src):
                found.setdefault(src, None)
    return list(found)


def _through_observers(arg: object, modules: dict[str, object]) -> object:
    while isinstance(arg, Node) and arg.op == "call_module" and isinstance(modules.get(str(arg.target)), QObserver):
        arg = arg.args[0]
    return arg
