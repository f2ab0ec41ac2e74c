"""Activation ranges chosen by reconstruction against the float network.

Min/max covers every calibration value, so one outlier sets the step of a whole tensor; a
ReLU6 output keeps [0, 6] even where the layer never comes near 6. The histogram methods
(mse, percentile) clip, but each tensor on its own, against its own float values.

Here, over a bounded sample of the calibration data, the quantized graph is walked in graph
order side by side with the float (BatchNorm-folded) network (``qconvert.core.walk``). At each
activation quantizer, its input as the quantized graph computes it (every earlier quantizer
already at its chosen range) is quantized over candidate ranges, each the current range with
its low and high ends pulled in by a factor of the grid, and the range whose dequantized
values are closest (mean square) to the float network's own value of that tensor is kept.
The quantizer is set to it in place, so later tensors are chosen on what the graph will
compute. The result is one (lo, hi) per tensor key; ``quantize`` then rebuilds the graph with
them, so every constraint of the target (shared scales, power-of-two steps) applies as it
does to calibrated ranges. Ranges only ever narrow.

Memory: the walk's frontier over the sample; time: one pass, a few dozen candidate
quantizations per tensor on at most ``_ELEMENTS`` of its values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.fx import GraphModule, Node

from qconvert.core.bias_correction import Batches, _sample, folded_reference
from qconvert.core.walk import Chunks, steps, walk

__all__ = ["LearnedRange", "learn_activation_ranges"]

_Q = torch.ops.quantized_decomposed.quantize_per_tensor.default
_DQ = torch.ops.quantized_decomposed.dequantize_per_tensor.default
#: Factors each end of a range may be pulled in by.
GRID = tuple(round(1.0 - 0.05 * k, 2) for k in range(15))
#: Values of a tensor the candidates are scored on (a fixed random subset beyond it).
_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class LearnedRange:
    """One activation tensor's chosen range."""

    key: str
    lo: float
    hi: float
    #: The calibrated range it narrowed.
    lo_before: float
    hi_before: float
    #: Mean square error against the float network's tensor, before and after.
    error_before: float
    error_after: float


@dataclass(frozen=True)
class _Grid:
    """An activation quantizer's integer grid."""

    qmin: int
    qmax: int
    symmetric: bool

    def qparams(self, lo: float, hi: float) -> tuple[float, int]:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        eps = float(torch.finfo(torch.float32).eps)
        if self.symmetric:
            half = float(min(-self.qmin, self.qmax))
            return max(max(-lo, hi) / half, eps), 0
        scale = max((hi - lo) / (self.qmax - self.qmin), eps)
        return scale, int(min(max(round(self.qmin - lo / scale), self.qmin), self.qmax))

    def error(self, x: torch.Tensor, ref: torch.Tensor, lo: float, hi: float) -> float:
        scale, zp = self.qparams(lo, hi)
        q = torch.clamp(torch.round(x / scale) + zp, self.qmin, self.qmax)
        return float(((q - zp) * scale - ref).pow(2).mean())


def _quantizers(qgm: GraphModule, names: set[str]) -> dict[str, Node]:
    """Each per-tensor activation quantizer whose input is a computed tensor the float network also has, by that tensor's name."""
    found: dict[str, Node] = {}
    for n in qgm.graph.nodes:
        x = n.args[0] if n.target == _Q and n.args else None
        if isinstance(x, Node) and x.op == "call_function" and x.name in names and isinstance(n.args[1], float) \
                and x.name not in found:
            found[x.name] = n
    return found


def _sharing(q: Node) -> list[Node]:
    """``q``, its dequantizes, and the quantizers downstream that share its parameters through an op that
    only moves values (pad, pooling, reshape), with theirs: what changes together with ``q``."""
    group, todo = [q], [q]
    while todo:
        node = todo.pop()
        for dq in node.users:
            if dq.target != _DQ or dq.args[1:3] != node.args[1:3]:
                continue
            group.append(dq)
            for user in dq.users:
                nxt = list(user.users)
                if len(user.all_input_nodes) == 1 and len(nxt) == 1 and nxt[0].target == _Q \
                        and nxt[0].args[1:3] == node.args[1:3] and nxt[0] not in group:
                    group.append(nxt[0])
                    todo.append(nxt[0])
    return group


def _subset(x: torch.Tensor, ref: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x, ref = x.reshape(-1).double(), ref.reshape(-1).double()
    if x.numel() <= _ELEMENTS:
        return x, ref
    idx = torch.randint(0, x.numel(), (_ELEMENTS,), generator=generator)
    return x[idx], ref[idx]


def _choose(grid: _Grid, x: torch.Tensor, ref: torch.Tensor, lo0: float, hi0: float) -> tuple[float, float, float]:
    """The (lo, hi) with the lowest error: the high end first over the grid, then the low end."""
    best_lo, best_hi = lo0, hi0
    best = grid.error(x, ref, lo0, hi0)
    for a in GRID[1:]:
        e = grid.error(x, ref, best_lo, hi0 * a)
        if e < best:
            best, best_hi = e, hi0 * a
    if lo0 < 0.0:
        for a in GRID[1:]:
            e = grid.error(x, ref, lo0 * a, best_hi)
            if e < best:
                best, best_lo = e, lo0 * a
    return best_lo, best_hi, best


def learn_activation_ranges(float_graph: GraphModule, qgm: GraphModule, batches: Batches, samples: int = 64,
                            seed: int = 0) -> tuple[LearnedRange, ...]:
    """Choose the range of every per-tensor activation quantizer of ``qgm`` by its error against the float
    network on ``samples`` calibration samples; ``qgm``'s quantizers are set to them in place.
    The keys are the names of the quantized tensors (the statistics' keys)."""
    reference = folded_reference(float_graph)
    names = {n.name for n in reference.graph.nodes if n.op == "call_function"}
    quantizers = _quantizers(qgm, names)
    if not quantizers:
        return ()
    inputs = _sample(batches, samples)
    floats = steps(reference, inputs, set(quantizers))
    generator = torch.Generator().manual_seed(seed)
    done: list[LearnedRange] = []

    def float_value(name: str) -> torch.Tensor:
        node, value = next(floats)
        while node.name != name:
            node, value = floats.send(None)
        return torch.cat(list(value))

    shared: dict[Node, tuple[float, float, float, float]] = {}

    def hook(node: Node, value: Chunks) -> Chunks:
        q = quantizers[node.name]
        ref = float_value(node.name)
        if q in shared:  # set with the quantizer it shares its parameters with
            done.append(LearnedRange(node.name, *shared[q], float("nan"), float("nan")))
            return value
        x = torch.cat(list(value))
        scale, zp, qmin, qmax = float(q.args[1]), int(q.args[2]), int(q.args[3]), int(q.args[4])  # type: ignore[arg-type]  # literal qparams
        grid = _Grid(qmin, qmax, symmetric=zp == 0 and qmin < 0)
        lo0, hi0 = (qmin - zp) * scale, (qmax - zp) * scale
        xs, refs = _subset(x, ref, generator)
        before = grid.error(xs, refs, lo0, hi0)
        lo, hi, after = _choose(grid, xs, refs, lo0, hi0)
        new_scale, new_zp = grid.qparams(lo, hi)
        for member in _sharing(q):
            member.args = (member.args[0], new_scale, new_zp, *member.args[3:])
            if member.target == _Q and member is not q:
                shared[member] = (lo, hi, lo0, hi0)
        done.append(LearnedRange(node.name, lo, hi, lo0, hi0, before, after))
        return value

    walk(qgm, inputs, set(quantizers), hook)
    floats.close()
    return tuple(done)
