"""Where a quantized model's remaining error sits: its activation quantizers made float, one group at a time.

The recipe's quantized graph is built ONCE (adaround included, the slow part); each variant is then a copy
of that graph with some activation quantizers removed (every DequantizeLinear of them reads the float tensor
again), scored in the torch simulation against float on the evaluation views. No variant quantizes again,
so the weights keep the rounding learned for the all-int8 graph: with ``adaround_target: network`` that
rounding already makes up for part of each activation's error, so a group's gain here is what is left of
its error, not what a recipe keeping it wider (and learning its rounding for that) would measure.

`python -m bench.float_one efficientnet_lite1 [recipe.yaml] [views]` (README "Real networks", mixed precision).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.fx import GraphModule, Node

import qconvert.core.quantize  # noqa: F401  (registers torch.ops.quantized_decomposed)

__all__ = ["ActivationQuantizer", "activation_quantizers", "groups", "with_float"]

_Q = torch.ops.quantized_decomposed.quantize_per_tensor.default
_DQ = torch.ops.quantized_decomposed.dequantize_per_tensor.default


@dataclass(frozen=True)
class ActivationQuantizer:
    """One activation tensor the graph quantizes: the node that makes it, its op and module, and its step."""

    tensor: str
    op: str
    module: str
    scale: float


def _module(node: Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return str(list(stack.values())[-1][0]) if stack else ""


def activation_quantizers(gm: GraphModule) -> list[ActivationQuantizer]:
    """Every per-tensor activation quantizer of ``gm`` (weights, which come from attributes, are left out)."""
    out = []
    for q in gm.graph.nodes:
        if q.target == _Q and isinstance(q.args[0], Node) and q.args[0].op != "get_attr":
            src = q.args[0]
            op = getattr(src.target, "__name__", str(src.target)).split(".")[0] if src.op == "call_function" else src.op
            out.append(ActivationQuantizer(src.name, op, _module(src), float(q.args[1])))
    return out


def with_float(gm: GraphModule, tensors: Iterable[str]) -> GraphModule:
    """A copy of ``gm`` in which the activation quantizers of ``tensors`` are gone (those tensors stay float)."""
    names = set(tensors)
    g = copy.deepcopy(gm)
    found = set()
    for q in [n for n in g.graph.nodes if n.target == _Q and isinstance(n.args[0], Node) and n.args[0].name in names]:
        found.add(q.args[0].name)
        for dq in [u for u in q.users if u.target == _DQ]:
            dq.replace_all_uses_with(q.args[0])
    if found != names:
        raise KeyError(f"no activation quantizer for {sorted(names - found)}")
    g.graph.eliminate_dead_code()
    g.recompile()
    return g


def groups(quantizers: Sequence[ActivationQuantizer]) -> dict[str, list[str]]:
    """EfficientNet-style groups by the module that makes each tensor (a group with no member is left out)."""
    def pick(test: Callable[[ActivationQuantizer], bool]) -> list[str]:
        return [a.tensor for a in quantizers if test(a)]

    relu6 = [a for a in quantizers if a.op == "hardtanh"]
    found = {
        "logits (the classifier's output)": pick(lambda a: a.op == "linear"),
        "pooled features": pick(lambda a: a.op in ("adaptive_avg_pool2d", "view", "dropout", "flatten")),
        "stem output": [relu6[0].tensor] if relu6 else [],
        "head conv output": [relu6[-1].tensor] if len(relu6) > 1 else [],
        "project-conv outputs": pick(lambda a: a.module.endswith("_project_conv")),
        "residual adds": pick(lambda a: a.op == "add"),
        "expand and depthwise outputs (ReLU6)": [a.tensor for a in relu6[1:-1]],
        "network input": pick(lambda a: a.op == "pad" and a.module.startswith("_conv_stem")),
    }
    return {k: v for k, v in found.items() if v}


def main(name: str, recipe: Path, views: int) -> None:
    from bench.recipe_sim import compare, quantized

    torch.set_num_threads(1)
    q = quantized(recipe, views, name)

    def score(gm: GraphModule) -> str:
        res = compare(gm, q)
        return f"{100 * float(res.top1_agreement or 0):.1f} % | {res.sqnr_db:.2f} dB"

    print(f"{name}, {recipe.name}, {views} evaluation views, torch simulation vs float")
    print(f"| kept float | tensors | agreement | SQNR |\n|---|---|---|---|\n| nothing | 0 | {score(q.graph)} |", flush=True)
    for label, tensors in groups(activation_quantizers(q.graph)).items():
        print(f"| {label} | {len(tensors)} | {score(with_float(q.graph, tensors))} |", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    best = Path(__file__).parents[1] / "zoo" / "recipe_best.yaml"
    main(args[0] if args else "efficientnet_lite1", Path(args[1]) if len(args) > 1 else best, int(args[2]) if len(args) > 2 else 512)
