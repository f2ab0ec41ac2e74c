"""Mark where a source model's quantizers sit, capture, then take the marks out.

An importer turns the source model into a float model in which every quantizer became a
``Tap``: an identity that torch.export keeps as a ``qconvert::tap`` node. After capture each
tap node says which tensor of the graph its quantizer covered (an activation: the node it
reads; a weight: the parameter feeding a conv or linear). The taps are then removed, leaving
the plain float graph the build quantizes, with the tensor keys the build uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.fx import GraphModule, Node

from qconvert.core.capture import Captured, capture, graph_fingerprint
from qconvert.core.graph import OpKind, arg_node, module_of, op_kind

__all__ = ["Tap", "TapSite", "capture_tapped", "strip_taps"]


@torch.library.custom_op("qconvert::tap", mutates_args=())
def _tap(x: torch.Tensor, index: int) -> torch.Tensor:
    return x.clone()


@_tap.register_fake
def _(x: torch.Tensor, index: int) -> torch.Tensor:
    return torch.empty_like(x)


class Tap(torch.nn.Module):
    """Stands where quantizer ``index`` of the source model was; passes its input through."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.qconvert.tap(x, self.index)

    def extra_repr(self) -> str:
        return f"index={self.index}"


@dataclass(frozen=True)
class TapSite:
    """Where one tap landed: the tensor key the build uses, its role and module."""

    index: int
    key: str
    role: str
    module: str


def _real_input(node: Node) -> Node:
    while node.op == "call_function" and node.target == torch.ops.qconvert.tap.default:
        node = arg_node(node, 0)
    return node


def _weight_site(index: int, tap: Node) -> TapSite | None:
    for user in tap.users:
        if op_kind(user) == OpKind.WEIGHTED and len(user.args) > 1 and user.args[1] is tap:
            module = module_of(user)
            return TapSite(index, f"{module or user.name}.weight", "weight", module)
    return None


def strip_taps(gm: GraphModule) -> list[TapSite]:
    """Remove every tap node from ``gm`` (in place) and say where each one was.

    A tap on a parameter read by a conv/linear is a weight site; any other is an
    activation site keyed by the node it reads (taps on taps resolve to the real tensor).
    """
    sites: list[TapSite] = []
    taps = [n for n in gm.graph.nodes if n.op == "call_function" and n.target == torch.ops.qconvert.tap.default]
    for n in taps:
        index = int(n.args[1])
        src = _real_input(n)
        site = _weight_site(index, n) if src.op == "get_attr" else None
        sites.append(site or TapSite(index, src.name, "activation", module_of(src)))
    for n in reversed(taps):
        n.replace_all_uses_with(n.args[0])
        gm.graph.erase_node(n)
    gm.graph.lint()
    gm.recompile()
    return sites


def capture_tapped(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> tuple[Captured, list[TapSite]]:
    """Capture a tapped float model; the result is the float graph and the tap sites."""
    tapped = capture(model, example_inputs)
    gm = tapped.graph
    sites = strip_taps(gm)
    return Captured(gm, tapped.input_names, example_inputs, graph_fingerprint(gm, example_inputs)), sites
