"""Learned weight rounding (AdaRound: Nagel et al. 2020, "Up or Down? Adaptive Rounding for
Post-Training Quantization").

Rounding each weight to the nearest integer minimises each weight's own error, not the
layer's output error: the errors of a row of weights add up in the dot product. AdaRound
learns, per weight, whether to round down or up (a soft variable pushed to 0 or 1 by a
regulariser whose sharpness is annealed) so that the layer's output on real inputs stays
close to the output with float weights.

Here, layer by layer in graph order over a bounded sample of the calibration data
(``qconvert.core.walk``): each conv/linear with int8 weights is optimised on the inputs it
has in the quantized graph (earlier layers already rounded), against the same layer with
its float (BatchNorm-folded) weights on those inputs, through its fused ReLU/ReLU6 where it
has one. Its integer weights are then replaced in place and its output recomputed, so the
next layer sees the rounded layer. Scales, zero points and biases are untouched; empirical
bias correction, when on, runs after it. Memory: the sample's activations at the walk's
frontier plus one layer's stored input; time: ``iterations`` small steps per layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.fx import GraphModule, Node

from qconvert.core.bias_correction import Batches, folded_reference
from qconvert.core.graph import OpKind, arg_int, arg_node, attr_of, op_kind
from qconvert.core.walk import Chunks, steps, walk

__all__ = ["AdaroundTarget", "RoundedLayer", "learn_rounding"]

#: What each layer's rounding reconstructs: the float network's own output there, or the layer with float weights on its quantized input.
AdaroundTarget = Literal["network", "layer"]

_DQ_PER_CHANNEL = torch.ops.quantized_decomposed.dequantize_per_channel.default
_DQ_PER_TENSOR = torch.ops.quantized_decomposed.dequantize_per_tensor.default
_ZETA, _GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (AdaRound, eq. 23)
_ACTS: dict[Any, Callable[[torch.Tensor, Node], torch.Tensor]] = {
    torch.ops.aten.relu.default: lambda t, n: F.relu(t),
    torch.ops.aten.relu_.default: lambda t, n: F.relu(t),
    torch.ops.aten.hardtanh.default: lambda t, n: F.hardtanh(t, *(float(a) for a in n.args[1:3])),  # type: ignore[arg-type]  # hardtanh's bounds: numbers
    torch.ops.aten.hardtanh_.default: lambda t, n: F.hardtanh(t, *(float(a) for a in n.args[1:3])),  # type: ignore[arg-type]  # hardtanh's bounds: numbers
    torch.ops.aten.relu6.default: lambda t, n: F.hardtanh(t, 0.0, 6.0),
}


@dataclass(frozen=True)
class RoundedLayer:
    """One layer whose integer weights were learned."""

    layer: str
    weights: int
    #: Fraction of its weights rounded the other way than to nearest.
    flipped: float
    #: The layer's output error (mean square, through its activation) with nearest and with learned rounding.
    error_nearest: float
    error_learned: float


@dataclass
class _QWeight:
    """A layer's integer weight as the graph holds it: dequantize_per_channel/per_tensor(get_attr, ...)."""

    attr: str
    scale: torch.Tensor  # broadcast to the weight's shape
    zero_point: torch.Tensor
    qmin: int
    qmax: int


def _const(gm: GraphModule, node: Any) -> Any:
    """The value of a node computed from attributes and literals only (a weight or bias dequantize)."""
    if not isinstance(node, Node):
        return node
    if node.op == "get_attr":
        return attr_of(gm, str(node.target))
    if node.op != "call_function":
        raise ValueError(f"{node.name} is not a constant")
    args = [_const(gm, a) for a in node.args]
    kwargs = {k: _const(gm, v) for k, v in node.kwargs.items()}
    return node.target(*args, **kwargs)  # type: ignore[operator]  # fx types a call_function target as str too


def _qweight(gm: GraphModule, node: Node) -> _QWeight | None:
    w = node.args[1] if len(node.args) > 1 else None
    if not isinstance(w, Node) or w.target not in (_DQ_PER_CHANNEL, _DQ_PER_TENSOR):
        return None
    src = w.args[0]
    if not (isinstance(src, Node) and src.op == "get_attr"):
        return None
    q = attr_of(gm, str(src.target))
    if not isinstance(q, torch.Tensor) or q.is_floating_point():
        return None
    scale, zp = (torch.as_tensor(_const(gm, a)).double() for a in w.args[1:3])
    if w.target == _DQ_PER_CHANNEL:
        shape = [1] * q.dim()
        shape[arg_int(w, 3)] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
        qmin, qmax = arg_int(w, 4), arg_int(w, 5)
    else:
        qmin, qmax = arg_int(w, 3), arg_int(w, 4)
    return _QWeight(str(src.target), scale, zp, qmin, qmax)


def _activation(node: Node) -> Callable[[torch.Tensor], torch.Tensor]:
    users = list(node.users)
    if len(users) == 1 and users[0].target in _ACTS:
        act, user = _ACTS[users[0].target], users[0]
        return lambda t: act(t, user)
    return lambda t: t


def _h(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0.0, 1.0)


class _Layer:
    """One conv/linear being rounded: its float weight, integer grid and how to run it."""

    def __init__(self, gm: GraphModule, node: Node, float_weight: torch.Tensor, qw: _QWeight) -> None:
        self.gm, self.node, self.qw = gm, node, qw
        self.w = float_weight.double()
        self.bias = _const(gm, node.args[2]) if len(node.args) > 2 and node.args[2] is not None else None
        self.rest = [_const(gm, a) for a in node.args[3:]]
        self.kwargs = {k: _const(gm, v) for k, v in node.kwargs.items()}
        self.act = _activation(node)
        self.floor = torch.floor(self.w / qw.scale + qw.zero_point)

    def run(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        fn: Callable[..., torch.Tensor] = self.node.target  # type: ignore[assignment]  # fx types a call_function target as str too
        return fn(x, weight.to(x.dtype), self.bias, *self.rest, **self.kwargs)

    def conv2d(self) -> tuple[list[int], list[int], list[int], int] | None:
        """stride, padding, dilation and groups of a plain 2-d convolution (windows can be cut from it), else None."""
        if self.node.target != torch.ops.aten.conv2d.default or self.kwargs:
            return None
        defaults: list[Any] = [[1], [0], [1], 1]
        rest = [*self.rest, *defaults[len(self.rest):]]
        two = [([int(v[0])] * 2 if len(v) == 1 else [int(a) for a in v]) for v in rest[:3]]
        return two[0], two[1], two[2], int(rest[3])

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        return ((q - self.qw.zero_point) * self.qw.scale).float()

    def nearest(self) -> torch.Tensor:
        return torch.clamp(torch.round(self.w / self.qw.scale + self.qw.zero_point), self.qw.qmin, self.qw.qmax)

    def soft(self, v: torch.Tensor) -> torch.Tensor:
        q = torch.clamp(self.floor.float() + _h(v), self.qw.qmin, self.qw.qmax)
        return (q - self.qw.zero_point.float()) * self.qw.scale.float()

    def hard(self, v: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.floor + (v.double() >= 0).double(), self.qw.qmin, self.qw.qmax)


def _error(layer: _Layer, x: torch.Tensor, ref: torch.Tensor, q: torch.Tensor) -> float:
    return float(((layer.act(layer.run(x, layer.dequantize(q))) - ref) ** 2).mean())


class _Windows:
    """Random training batches of one layer: its inputs and its targets on ``batch`` samples and,
    for a 2-d convolution, a random output window of at most ``size`` x ``size`` with the input
    window that computes it (the conv's zero padding applied to the whole map first), so a step
    costs the same at every resolution and its target is the target's own window."""

    def __init__(self, layer: _Layer, x: torch.Tensor, ref: torch.Tensor, batch: int, size: int,
                 generator: torch.Generator) -> None:
        self.layer, self.x, self.ref, self.batch, self.size, self.generator = layer, x, ref, batch, size, generator
        conv = layer.conv2d() if x.dim() == 4 and ref.dim() == 4 else None
        self.conv = conv if conv is not None and (ref.shape[2] > size or ref.shape[3] > size) else None

    def _int(self, high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=self.generator))

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """Inputs, targets and the layer run (weight -> output through its activation) for one step."""
        idx = torch.randint(0, len(self.x), (min(self.batch, len(self.x)),), generator=self.generator)
        xb, ref, layer = self.x[idx], self.ref[idx], self.layer
        if self.conv is None:
            return xb, ref, lambda w: layer.act(layer.run(xb, w))
        stride, pad, dil, groups = self.conv
        h, w = min(self.size, ref.shape[2]), min(self.size, ref.shape[3])
        i, j = self._int(ref.shape[2] - h + 1), self._int(ref.shape[3] - w + 1)
        kh, kw = layer.w.shape[2], layer.w.shape[3]
        xp = F.pad(xb, (pad[1], pad[1], pad[0], pad[0]))
        xw = xp[:, :, i * stride[0]: (i + h - 1) * stride[0] + (kh - 1) * dil[0] + 1,
                j * stride[1]: (j + w - 1) * stride[1] + (kw - 1) * dil[1] + 1]
        bias = layer.bias
        return xw, ref[:, :, i:i + h, j:j + w], lambda wt: layer.act(F.conv2d(xw, wt.to(xw.dtype), bias, stride, 0, dil, groups))


def _optimise(layer: _Layer, windows: _Windows, iterations: int, reg: float) -> torch.Tensor:
    """The learned integer weights of ``layer``: rectified-sigmoid rounding variables, Adam, the
    regulariser annealed after a 20 % warm-up, each step on one random batch of ``windows``."""
    rest = (layer.w / layer.qw.scale + layer.qw.zero_point - layer.floor).clamp(1e-4, 1 - 1e-4)
    v = (-torch.log((_ZETA - _GAMMA) / (rest - _GAMMA) - 1)).float().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=1e-2)
    warm = int(0.2 * iterations)
    for it in range(iterations):
        _, ref, run = windows.draw()
        out = run(layer.soft(v))
        loss = (out - ref).pow(2).sum(1 if ref.dim() > 2 else -1).mean()
        if it >= warm:
            beta = 2.0 + (20.0 - 2.0) * (1 + math.cos(math.pi * (it - warm) / max(iterations - warm, 1))) / 2
            loss = loss + reg * (1 - (2 * _h(v) - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return layer.hard(v.detach())


def learn_rounding(float_graph: GraphModule, qgm: GraphModule, batches: Batches, samples: int = 64,
                   iterations: int = 300, batch: int = 8, reg: float = 0.01, crop: int = 32,
                   seed: int = 0, target: AdaroundTarget = "network") -> tuple[RoundedLayer, ...]:
    """Learn the integer weights of every conv/linear of ``qgm`` in place; returns what changed per layer.

    ``target``: "network", each layer's output should be the float network's own output at that
    layer (its float input through its float weights, walked side by side with the quantized
    graph), so the rounding also makes up for the error its quantized input brings from upstream;
    "layer", the same layer with float weights on the quantized input.
    """
    from qconvert.core.bias_correction import _sample

    reference = folded_reference(float_graph)
    float_weights = {n.name: attr_of(reference, str(n.args[1].target)) for n in reference.graph.nodes
                     if op_kind(n) == OpKind.WEIGHTED and isinstance(n.args[1], Node) and n.args[1].op == "get_attr"}
    layers = [n for n in qgm.graph.nodes if op_kind(n) == OpKind.WEIGHTED and n.name in float_weights
              and _qweight(qgm, n) is not None and isinstance(n.args[0], Node)]
    if not layers:
        return ()
    inputs = _sample(batches, samples)
    feeds: dict[str, list[Node]] = {}
    for n in layers:
        feeds.setdefault(n.args[0].name, []).append(n)
    stash: dict[str, torch.Tensor] = {}
    done: list[RoundedLayer] = []
    generator = torch.Generator().manual_seed(seed)
    floats = steps(reference, inputs, {n.name for n in layers}) if target == "network" else None

    def float_output(name: str) -> torch.Tensor:
        """The float network's value at layer ``name`` (the float walk moves on to it)."""
        assert floats is not None
        node, value = next(floats)
        while node.name != name:
            node, value = floats.send(None)
        return torch.cat(list(value))

    def hook(node: Node, value: Chunks) -> Chunks:
        if node in layers:
            value = round_layer(node, value)
        if node.name in feeds:  # after rounding: a layer may feed the next one directly (no activation Q/DQ between)
            stash[node.name] = torch.cat(list(value))
        return value

    def round_layer(node: Node, value: Chunks) -> Chunks:
        x = stash[arg_node(node, 0).name]
        qw = _qweight(qgm, node)
        assert qw is not None
        layer = _Layer(qgm, node, float_weights[node.name], qw)
        ref = layer.act(float_output(node.name) if floats is not None else layer.run(x, layer.w.float()))
        with torch.enable_grad():
            learned = _optimise(layer, _Windows(layer, x, ref, batch, crop, generator), iterations, reg)
        nearest = layer.nearest()
        sub = slice(0, 4 * batch)
        before, after = _error(layer, x[sub], ref[sub], nearest), _error(layer, x[sub], ref[sub], learned)
        current = attr_of(qgm, qw.attr)
        owner, _, leaf = qw.attr.rpartition(".")
        setattr(qgm.get_submodule(owner) if owner else qgm, leaf, learned.to(current.dtype))
        done.append(RoundedLayer(node.name, learned.numel(), float((learned != nearest).double().mean()), before, after))
        if all(other in [d.layer for d in done] or other is node for other in feeds[arg_node(node, 0).name]):
            stash.pop(arg_node(node, 0).name, None)
        return Chunks(layer.run(t, layer.dequantize(learned)) for t in _chunks_of(x, value))

    names = {n.name for n in layers} | set(feeds)
    with torch.no_grad():
        walk(qgm, inputs, names, hook)
        if floats is not None:
            floats.close()
    return tuple(done)


def _chunks_of(x: torch.Tensor, like: Chunks) -> list[torch.Tensor]:
    """``x`` cut back into the chunk sizes of ``like``."""
    sizes = [len(t) for t in like]
    return list(torch.split(x, sizes))
