"""The captured graph as the build's quantizer sees it, for checks that run no data."""

from __future__ import annotations

import copy
import operator

import torch
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.utils import _fuse_conv_bn_

from qconvert.core.graph import OpKind, op_kind

__all__ = ["annotatable", "folded_names"]


def annotatable(gm: GraphModule) -> GraphModule:
    """A copy with BatchNorm folded into the convolutions, as ``prepare_pt2e`` folds it before it
    annotates (so a conv-bn-relu is one group there as here)."""
    g = copy.deepcopy(gm)
    _fuse_conv_bn_(g)
    return g


_BN = {torch.ops.aten.batch_norm.default, torch.ops.aten._native_batch_norm_legit_no_training.default}


def folded_names(gm: GraphModule) -> dict[str, str]:
    """Tensor names that BatchNorm folding retires -> the name that carries the tensor after it:
    a BatchNorm's output becomes its convolution's output (a quantizer placed after the BatchNorm
    is keyed by the convolution, as the build keys it)."""
    out: dict[str, str] = {}
    for node in gm.graph.nodes:
        if node.target not in _BN or not isinstance(node.args[0], Node):
            continue
        conv = node.args[0]
        if op_kind(conv) != OpKind.WEIGHTED or len(conv.users) != 1:
            continue
        out[node.name] = conv.name
        for user in node.users:  # the legit op returns a tuple: its first element is the output
            if user.target is operator.getitem and user.args[1] == 0:
                out[user.name] = conv.name
    return out
