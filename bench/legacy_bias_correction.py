"""The bias correction qconvert had before issue 20 (one full pass over the data per layer),
kept only to compare the two-pass version against in `make bench` (section scale) and tests.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch.fx import GraphModule
from torchao.quantization.pt2e.utils import _fuse_conv_bn_

from qconvert.core.bias_correction import bias_param
from qconvert.core.graph import OpKind, op_kind
from qconvert.errors import DataError

__all__ = ["correct_biases"]

Batches = Callable[[], Iterable[tuple[torch.Tensor, ...]]]


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
    layers = [n for n in qgm.graph.nodes if op_kind(n) == OpKind.WEIGHTED and n.name in ref_names and bias_param(qgm, n)]
    if not layers:
        return 0
    targets = _mean_outputs(reference, [n.name for n in layers], batches)
    for _ in range(iterations):
        for node, target in zip(layers, targets):
            (current_mean,) = _mean_outputs(qgm, [node.name], batches)
            found = bias_param(qgm, node)  # the same int32 bias lookup as the two-pass version
            assert found is not None
            attr, current = found.attr, found.value
            step = torch.round((current_mean - target) / found.scale).long()
            info = torch.iinfo(current.dtype)
            setattr(qgm, attr, (current.long() - step).clamp(info.min, info.max).to(current.dtype))
    return len(layers)
