"""The bias correction qconvert had before issue 20 (one full pass over the data per layer),
kept only to compare the two-pass version against in `make bench` (section scale) and tests.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.utils import _fuse_conv_bn_

from qconvert.core.graph import OpKind, op_kind
from qconvert.errors import DataError

__all__ = ["correct_biases"]

Batches = Callable[[], Iterable[tuple[torch.Tensor, ...]]]
_DQ_PER_CHANNEL = torch.ops.quantized_decomposed.dequantize_per_channel.default
_DQ_PER_TENSOR = torch.ops.quantized_decomposed.dequantize_per_tensor.default


def _with_taps(gm: GraphModule, names: list[str]) -> GraphModule:
    """A copy of ``gm`` that also returns the outputs of the named nodes."""
    tapped = copy.deepcopy(gm)
    nodes = {n.name: n for n in tapped.graph.nodes}
    out = next(n for n in tapped.graph.nodes if n.op == "output")
    outs = out.args[0] if isinstance(out.args[0], (tuple, list)) else (out.args[0],)
    out.args = (tuple(outs) + tuple(nodes[n] for n in names),)
    # the exported graph unflattens outputs to the model's own structure; the taps need a flat tuple
    tapped.graph.set_codegen(torch.fx.graph.CodeGen())
    tapped.recompile()
    return tapped


def _channel_means(t: torch.Tensor) -> torch.Tensor:
    dims = [d for d in range(t.dim()) if d != 1] if t.dim() > 2 else [0]
    return t.double().mean(dim=dims)


def _bias_int_param(qgm: GraphModule, node: Node) -> tuple[str, torch.Tensor] | None:
    bias = node.args[2] if len(node.args) > 2 else None
    if not isinstance(bias, Node) or bias.target not in (_DQ_PER_CHANNEL, _DQ_PER_TENSOR):
        return None
    src, scale = bias.args[0], bias.args[1]
    if not (isinstance(src, Node) and src.op == "get_attr"):
        return None
    scale_t = getattr(qgm, scale.target) if isinstance(scale, Node) else torch.tensor([float(scale)])  # type: ignore[arg-type]
    return str(src.target), scale_t


def _mean_outputs(gm: GraphModule, names: list[str], batches: Batches) -> list[torch.Tensor]:
    tapped = _with_taps(gm, names)
    sums: list[torch.Tensor] = []
    count = 0
    for batch in batches():
        outs = tapped(*batch)[-len(names):]
        means = [_channel_means(t) for t in outs]
        sums = means if count == 0 else [a + b for a, b in zip(sums, means)]
        count += 1
    if count == 0:
        raise DataError("bias_correction needs the calibration data: pass --calib-data (statistics alone are not enough)")
    return [t / count for t in sums]


@torch.no_grad()
def correct_biases(float_graph: GraphModule, qgm: GraphModule, batches: Batches, iterations: int = 1) -> int:
    """Correct the int32 biases of ``qgm`` in place, layer by layer in graph order.

    Each layer's shift is measured after the layers before it were corrected, so
    corrections do not compound; that costs one pass over the data per layer.
    Returns the number of layers corrected.
    """
    reference = copy.deepcopy(float_graph)
    _fuse_conv_bn_(reference)
    ref_names = {n.name for n in reference.graph.nodes if op_kind(n) == OpKind.WEIGHTED}
    layers = [n for n in qgm.graph.nodes if op_kind(n) == OpKind.WEIGHTED and n.name in ref_names and _bias_int_param(qgm, n)]
    if not layers:
        return 0
    targets = _mean_outputs(reference, [n.name for n in layers], batches)
    for _ in range(iterations):
        for node, target in zip(layers, targets):
            (current_mean,) = _mean_outputs(qgm, [node.name], batches)
            found = _bias_int_param(qgm, node)
            assert found is not None
            attr, scale = found
            current = getattr(qgm, attr)
            step = torch.round((current_mean - target) / scale.double()).long()
            info = torch.iinfo(current.dtype)
            setattr(qgm, attr, (current.long() - step).clamp(info.min, info.max).to(current.dtype))
    return len(layers)
