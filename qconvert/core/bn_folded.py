"""The captured graph with BatchNorm folded into the convolutions and linears before it, once per capture.

``prepare_pt2e`` folds BatchNorm first thing, on its own copy of the graph, every time a model is
quantized: a second of each quantization of EfficientNet-Lite1 (40 BatchNorms), paid again by every
target of a build and every variant ``sensitivity`` and ``auto_fallback`` score. Folding a copy once,
with the same torchao functions in the same order, gives ``prepare_pt2e`` a graph on which its own
folding finds nothing to do; the quantized graph is the same (tested node by node). The captured graph
itself keeps its BatchNorms (the float reference, bias correction and the layer report read them).
"""

from __future__ import annotations

import copy
import weakref

from torch.fx import GraphModule
from torchao.quantization.pt2e.utils import _fuse_conv_bn_, _fuse_linear_bn_

__all__ = ["bn_folded"]

_FOLDED: weakref.WeakKeyDictionary[GraphModule, GraphModule] = weakref.WeakKeyDictionary()


def bn_folded(graph: GraphModule) -> GraphModule:
    """``graph`` with BatchNorm folded as ``prepare_pt2e`` folds it (not a copy to modify: deep-copy it first)."""
    folded = _FOLDED.get(graph)
    if folded is None:
        folded = copy.deepcopy(graph)
        _fuse_conv_bn_(folded)
        _fuse_linear_bn_(folded)
        _FOLDED[graph] = folded
    return folded
