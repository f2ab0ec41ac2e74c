"""Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019).

For two convolutions joined through ReLU (or nothing), scaling output channel i
of the first by 1/s_i and input channel i of the second by s_i leaves the
function unchanged (ReLU is positive-homogeneous) while evening out per-channel
weight ranges, which is what per-tensor weight quantization of depthwise-separable
networks needs. s_i = sqrt(r1_i / r2_i) makes both ranges sqrt(r1_i * r2_i).
ReLU6 is not positive-homogeneous, so pairs joined by it are left alone.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, replace

import torch
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.utils import _fuse_conv_bn_

from qconvert.core.capture import Captured
from qconvert.core.graph import arg_int, arg_node, attr_of

__all__ = ["EqualizedPair", "equalize"]

aten = torch.ops.aten
_CONV = {aten.conv2d.default, aten.conv1d.default}
_HOMOGENEOUS = {aten.relu.default, aten.relu_.default}


@dataclass(frozen=True)
class EqualizedPair:
    first: str
    second: str


def equalize(captured: Captured, iterations: int = 4) -> tuple[Captured, list[EqualizedPair]]:
    """A copy of ``captured`` with BatchNorm folded and conv pairs equalized."""
    gm = copy.deepcopy(captured.graph)
    _fuse_conv_bn_(gm)
    pairs = _pairs(gm)
    for _ in range(iterations):
        for a, b in pairs:
            _equalize_pair(gm, a, b)
    gm.recompile()
    fp = hashlib.sha256(f"{captured.fingerprint}:cle:{iterations}".encode()).hexdigest()[:16]
    return replace(captured, graph=gm, fingerprint=fp), [EqualizedPair(a.name, b.name) for a, b in pairs]


def _groups(conv: Node) -> int:
    return arg_int(conv, 6, "groups", 1)


def _pairs(gm: GraphModule) -> list[tuple[Node, Node]]:
    """conv -> [relu] -> conv chains where the first conv's output feeds only the second."""
    pairs = []
    for a in gm.graph.nodes:
        if a.target not in _CONV or len(a.users) != 1 or not _attr_node(a.args[1]):
            continue
        link = next(iter(a.users))
        if link.target in _HOMOGENEOUS:
            if len(link.users) != 1:
                continue
            b = next(iter(link.users))
        else:
            link, b = a, link
        if b.target not in _CONV or b.args[0] is not link or not _attr_node(b.args[1]):
            continue
        if _groups(b) in (1, attr_of(gm, arg_node(a, 1).target).shape[0]):
            pairs.append((a, b))
    return pairs


def _attr_node(n: object) -> bool:
    return isinstance(n, Node) and n.op == "get_attr"




def _set(gm: GraphModule, node: Node, value: torch.Tensor) -> None:
    *path, last = str(node.target).split(".")
    owner: object = gm
    for part in path:
        owner = getattr(owner, part)
    old = getattr(owner, last)
    setattr(owner, last, torch.nn.Parameter(value, requires_grad=False) if isinstance(old, torch.nn.Parameter) else value)


@torch.no_grad()
def _equalize_pair(gm: GraphModule, a: Node, b: Node) -> None:
    w1, w2 = attr_of(gm, arg_node(a, 1).target), attr_of(gm, arg_node(b, 1).target)
    depthwise = _groups(b) > 1
    r1 = w1.abs().reshape(w1.shape[0], -1).amax(dim=1)
    r2 = w2.abs().reshape(w2.shape[0], -1).amax(dim=1) if depthwise else w2.abs().transpose(0, 1).reshape(w2.shape[1], -1).amax(dim=1)
    s = torch.where((r1 > 0) & (r2 > 0), torch.sqrt(r1 / r2.clamp_min(1e-12)), torch.ones_like(r1))
    view_a = (-1,) + (1,) * (w1.dim() - 1)
    _set(gm, arg_node(a, 1), w1 / s.reshape(view_a))
    bias = a.args[2] if len(a.args) > 2 else None
    if isinstance(bias, Node) and bias.op == "get_attr":
        _set(gm, bias, attr_of(gm, bias.target) / s)
    if depthwise:
        _set(gm, arg_node(b, 1), w2 * s.reshape(view_a))
    else:
        _set(gm, arg_node(b, 1), w2 * s.reshape((1, -1) + (1,) * (w2.dim() - 2)))
