"""Run an exported graph node by node over a bounded sample held in chunks.

Layer-by-layer algorithms (bias correction) need, at each layer, the value of that
layer over the whole sample before the next layer runs. Walking the graph once in
topological order does that in one pass: every value is held as a list of chunks
(one per batch of the sample) and freed after its last use, so memory is the live
frontier of the graph over the sample, never every layer at once.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import torch
from torch.fx import GraphModule, Node

from qconvert.core.graph import attr_of

__all__ = ["Chunks", "LayerHook", "steps", "walk"]


class Chunks(list):
    """One value of the graph over the sample: one entry per chunk (a list, to tell it from the graph's own lists)."""


#: Called with a node and its value when the node is one of the ``stop_at`` layers; returns the value to go on with.
LayerHook = Callable[[Node, Chunks], Chunks]


def _map(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` on every leaf of nested tuples, lists and dicts; a ``Chunks`` counts as a leaf."""
    if isinstance(value, Chunks):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(_map(v, fn) for v in value)
    if isinstance(value, list):
        return [_map(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _map(v, fn) for k, v in value.items()}
    return fn(value)


def _pick(value: Any, i: int) -> Any:
    return _map(value, lambda v: v[i] if isinstance(v, Chunks) else v)


def _count(value: Any) -> int:
    found = [0]
    _map(value, lambda v: found.append(len(v)) if isinstance(v, Chunks) else None)
    return max(found)


def _last_uses(gm: GraphModule) -> dict[Node, list[Node]]:
    """For each node, the values that die right after it runs."""
    last: dict[Node, Node] = {}
    for node in gm.graph.nodes:
        for used in node.all_input_nodes:
            last[used] = node
    dying: dict[Node, list[Node]] = {}
    for value, user in last.items():
        dying.setdefault(user, []).append(value)
    return dying


@torch.no_grad()
def walk(gm: GraphModule, inputs: Sequence[Chunks], layers: set[str], hook: LayerHook) -> None:
    """Run ``gm`` on ``inputs`` (one ``Chunks`` per graph input) in graph order, calling ``hook``
    after each node named in ``layers``; stops after the last of them."""
    run = steps(gm, inputs, layers)
    try:
        node, value = next(run)
        while True:
            node, value = run.send(hook(node, value))
    except StopIteration:
        return


def steps(gm: GraphModule, inputs: Sequence[Chunks], layers: set[str]) -> Generator[tuple[Node, Chunks], Chunks | None, None]:
    """``walk`` as a generator: yields each node named in ``layers`` with its value and goes on with
    the value sent back (``None``: unchanged), so two graphs can be walked side by side."""
    remaining = set(layers)
    env: dict[Node, Any] = {}
    placeholders = iter(inputs)
    dying = _last_uses(gm)
    for node in gm.graph.nodes:
        if not remaining:
            return
        if node.op == "placeholder":
            env[node] = next(placeholders)
        elif node.op == "get_attr":
            env[node] = attr_of(gm, node.target)
        elif node.op in ("call_function", "call_method", "call_module"):
            with torch.no_grad():
                env[node] = _run(gm, node, env)
        if node.name in remaining:
            sent = yield node, env[node]
            if sent is not None:
                env[node] = sent
            remaining.discard(node.name)
        for value in dying.get(node, ()):
            env.pop(value, None)


def _run(gm: GraphModule, node: Node, env: dict[Node, Any]) -> Any:
    args = _map(node.args, lambda a: env[a] if isinstance(a, Node) else a)
    kwargs = _map(node.kwargs, lambda a: env[a] if isinstance(a, Node) else a)
    if node.op == "call_function":
        fn: Callable[..., Any] = node.target  # type: ignore[assignment]  # fx types a call_function target as str too
    elif node.op == "call_module":
        fn = gm.get_submodule(str(node.target))
    else:
        def fn(obj: Any, *rest: Any, **kw: Any) -> Any:
            return getattr(obj, str(node.target))(*rest, **kw)
    n = max(_count(args), _count(kwargs))
    if n == 0:
        return fn(*args, **kwargs)
    return Chunks(fn(*_pick(args, i), **_pick(kwargs, i)) for i in range(n))
