"""Empirical bias correction (TIDL's "advanced calibration"; Nagel et al. 2019, sec. 4.2).

Quantizing weights and activations shifts the mean of each conv/linear output channel.
Comparing the float (BatchNorm-folded) graph with the quantized graph on the same
calibration samples measures that shift per channel, and subtracting it from the
int32 bias removes it.

Two passes over a bounded sample of the calibration data, whatever the depth:
one float pass records every corrected layer's per-channel output mean; one pass
walks the quantized graph layer by layer in graph order (``qconvert.core.walk``),
correcting each layer as soon as it has run on the whole sample, so later layers are
measured with the earlier corrections applied and corrections do not compound.
``iterations`` > 1 repeats the second pass.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.utils import _fuse_conv_bn_

from qconvert.core.graph import OpKind, arg_float, attr_of, op_kind
from qconvert.core.walk import Chunks, walk
from qconvert.errors import DataError

__all__ = ["DEFAULT_SAMPLES", "Batches", "BiasParam", "bias_param", "correct_biases", "corrected_layers", "folded_reference"]

Batches = Callable[[], Iterable[tuple[torch.Tensor, ...]]]
#: Calibration samples the correction measures on (a bounded sample: memory does not grow with the data).
DEFAULT_SAMPLES = 128
_DQ_PER_CHANNEL = torch.ops.quantized_decomposed.dequantize_per_channel.default
_DQ_PER_TENSOR = torch.ops.quantized_decomposed.dequantize_per_tensor.default
_NO_DATA = "bias_correction needs the calibration data: pass --calib-data (statistics alone are not enough)"


class BiasParam:
    """The int32 bias of one quantized layer: its attribute in the graph and its scale per channel."""

    def __init__(self, gm: GraphModule, attr: str, scale: torch.Tensor) -> None:
        self.gm, self.attr, self.scale = gm, attr, scale.double()

    @property
    def value(self) -> torch.Tensor:
        return attr_of(self.gm, self.attr)

    def shift_by(self, delta: torch.Tensor) -> torch.Tensor:
        """Add ``delta`` (float, per channel) in whole steps, saturating; returns the float change applied."""
        current = self.value
        info = torch.iinfo(current.dtype)
        new = (current.long() + torch.round(delta / self.scale).long()).clamp(info.min, info.max).to(current.dtype)
        owner, _, leaf = self.attr.rpartition(".")
        setattr(self.gm.get_submodule(owner) if owner else self.gm, leaf, new)
        return (new.long() - current.long()).double() * self.scale


def bias_param(gm: GraphModule, node: Node) -> BiasParam | None:
    """The int32 bias a quantized conv/linear reads through a dequantize, or None."""
    bias = node.args[2] if len(node.args) > 2 else None
    if not isinstance(bias, Node) or bias.target not in (_DQ_PER_CHANNEL, _DQ_PER_TENSOR):
        return None
    src, scale = bias.args[0], bias.args[1]
    if not (isinstance(src, Node) and src.op == "get_attr"):
        return None
    scale_t = attr_of(gm, scale.target) if isinstance(scale, Node) else torch.tensor([arg_float(bias, 1)])
    return BiasParam(gm, str(src.target), scale_t)


def folded_reference(float_graph: GraphModule) -> GraphModule:
    """The float graph with BatchNorm folded into the convs, as the quantized graph has it."""
    reference = copy.deepcopy(float_graph)
    _fuse_conv_bn_(reference)
    return reference


def corrected_layers(reference: GraphModule, qgm: GraphModule) -> list[Node]:
    """The quantized graph's conv/linear nodes with an int32 bias and a float counterpart, in graph order."""
    names = {n.name for n in reference.graph.nodes if op_kind(n) == OpKind.WEIGHTED}
    return [n for n in qgm.graph.nodes if op_kind(n) == OpKind.WEIGHTED and n.name in names and bias_param(qgm, n)]


def channel_dim(node: Node, t: torch.Tensor) -> int:
    """Where a layer's output channels are: dim 1 for convs, the last dim for linear."""
    return t.dim() - 1 if node.target == torch.ops.aten.linear.default or t.dim() <= 2 else 1


def _channel_sum(node: Node, chunks: Chunks) -> tuple[torch.Tensor, int]:
    """Per-channel sums in float64 (summed in float32 within each row, never copying the activation)."""
    total, count = None, 0
    for t in chunks:
        c = channel_dim(node, t)
        rows = t.movedim(c, -1).reshape(-1, t.shape[c]) if c != 1 or t.dim() <= 2 else t.reshape(t.shape[0], t.shape[1], -1)
        s = rows.sum(dim=0, dtype=torch.float64) if rows.dim() == 2 else rows.sum(dim=2).sum(dim=0, dtype=torch.float64)
        total = s if total is None else total + s
        count += t.numel() // t.shape[c]
    assert total is not None
    return total, count


def _broadcast(delta: torch.Tensor, node: Node, t: torch.Tensor) -> torch.Tensor:
    shape = [1] * t.dim()
    shape[channel_dim(node, t)] = -1
    return delta.to(t.dtype).reshape(shape)


def _sample(batches: Batches, limit: int) -> list[Chunks]:
    """Up to ``limit`` calibration samples, kept in their batches (one ``Chunks`` per graph input)."""
    kept: list[tuple[torch.Tensor, ...]] = []
    taken = 0
    for batch in batches():
        if taken >= limit:
            break
        batch = tuple(t[: limit - taken] for t in batch)
        kept.append(batch)
        taken += len(batch[0])
    if not kept:
        raise DataError(_NO_DATA)
    return [Chunks(b[i] for b in kept) for i in range(len(kept[0]))]


@torch.no_grad()
def correct_biases(float_graph: GraphModule, qgm: GraphModule, batches: Batches, iterations: int = 1,
                   samples: int = DEFAULT_SAMPLES) -> int:
    """Correct the int32 biases of ``qgm`` in place, layer by layer in graph order.

    Returns the number of layers corrected.
    """
    reference = folded_reference(float_graph)
    layers = corrected_layers(reference, qgm)
    if not layers:
        return 0
    inputs = _sample(batches, samples)
    names = {n.name for n in layers}
    targets: dict[str, torch.Tensor] = {}

    def record(node: Node, value: Chunks) -> Chunks:
        total, count = _channel_sum(node, value)
        targets[node.name] = total / count
        return value

    walk(reference, inputs, names, record)
    params = {n.name: bias_param(qgm, n) for n in layers}

    def correct(node: Node, value: Chunks) -> Chunks:
        total, count = _channel_sum(node, value)
        param = params[node.name]
        assert param is not None
        applied = param.shift_by(targets[node.name] - total / count)
        for t in value:  # the layer's own output, read by nothing yet: corrected in place
            t.add_(_broadcast(applied, node, t))
        return value

    for _ in range(iterations):
        walk(qgm, inputs, names, correct)
    return len(layers)
