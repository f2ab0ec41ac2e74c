"""A model lint for the accuracy traps TI's guidelines name.

Sources: edgeai-tidl-tools ``docs/tidl_fsg_quantization.md`` ("Guidelines for
Getting Best Accuracy": BatchNorm after every convolution except the last,
depthwise ones without exception; weight decay), and TI's QAT guidelines
(edgeai-torchvision/edgeai-modeloptimization: use modules, not functionals, for
range-changing ops, and do not reuse a module instance, as torchvision's
ResNet reuses its ReLU). Missing weight decay cannot be seen in a trained
model; what it leaves behind, unusually wide weight ranges, can: a layer
whose largest output channel (after BatchNorm folding) dwarfs its median
channel loses that many bits in every other channel under per-tensor weights.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn
from torch.fx import GraphModule, Node

from qconvert.targets import Captured, call_model, module_of

__all__ = [
    "WIDE_RANGE_RATIO",
    "LintFinding",
    "convs_without_bn",
    "functional_ops",
    "lint_model",
    "reused_modules",
    "wide_weight_ranges",
]

aten = torch.ops.aten
#: Largest / median output-channel range above which a weight is flagged (4 of 8 bits lost).
WIDE_RANGE_RATIO = 16.0
_CONVS = {aten.conv1d.default, aten.conv2d.default, aten.conv3d.default, aten.conv2d.padding}
_BATCH_NORMS = {aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default}
_RANGE_CHANGING = {
    aten.add.Tensor: "add", aten.add_.Tensor: "add", aten.sub.Tensor: "sub", aten.mul.Tensor: "mul",
    aten.mul_.Tensor: "mul", aten.div.Tensor: "div", aten.cat.default: "cat", aten.concat.default: "cat",
    aten.relu.default: "relu", aten.relu_.default: "relu", aten.relu6.default: "relu6", aten.hardtanh.default: "hardtanh",
    aten.hardtanh_.default: "hardtanh", aten.clamp.default: "clamp", aten.sigmoid.default: "sigmoid",
    aten.tanh.default: "tanh", aten.leaky_relu.default: "leaky_relu", aten.gelu.default: "gelu", aten.silu.default: "silu",
    aten.hardswish.default: "hardswish", aten.hardsigmoid.default: "hardsigmoid",
}


_MODULE_FOR = {
    "relu": "nn.ReLU", "relu6": "nn.ReLU6", "hardtanh": "nn.Hardtanh", "sigmoid": "nn.Sigmoid", "tanh": "nn.Tanh",
    "leaky_relu": "nn.LeakyReLU", "gelu": "nn.GELU", "silu": "nn.SiLU", "hardswish": "nn.Hardswish",
    "add": "an Add module (TI: xnn.layers.AddBlock)", "cat": "a Cat module (TI: xnn.layers.CatBlock)",
}


@dataclass(frozen=True)
class LintFinding:
    """One trap: the rule, the module path it is in, and a message that says what to change."""

    rule: str
    module: str
    message: str


def lint_model(model: nn.Module, captured: Captured) -> tuple[LintFinding, ...]:
    """All findings for a float model and its captured graph (the model is left as it was)."""
    gm = captured.graph
    return (reused_modules(model, captured.example_inputs, captured.input_names) + functional_ops(model, gm)
            + convs_without_bn(gm) + wide_weight_ranges(gm))


def _shown(path: str, model: nn.Module | None = None) -> str:
    return path if path else f"<top-level {type(model).__name__ if model is not None else 'model'}>"


def reused_modules(model: nn.Module, example: tuple[torch.Tensor, ...], names: tuple[str, ...] = ()) -> tuple[LintFinding, ...]:
    """Leaf modules called more than once in one forward pass (counted with forward hooks)."""
    calls: Counter[str] = Counter()
    leaves = [(name, m) for name, m in model.named_modules() if name and not any(True for _ in m.children())]
    handles = [m.register_forward_hook(lambda _m, _i, _o, name=name: calls.update([name])) for name, m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            call_model(model, names, example) if names else model(*example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return tuple(
        LintFinding("module_reused", name, f"module '{name}' ({type(model.get_submodule(name)).__name__}) is called {n} times "
                    "in forward; give each use its own instance so each gets its own range")
        for name, n in sorted(calls.items()) if n > 1
    )


def functional_ops(model: nn.Module, gm: GraphModule) -> tuple[LintFinding, ...]:
    """Range-changing ops written in a composite module's forward instead of as a module of their own."""
    seen: Counter[tuple[str, str]] = Counter()
    for n in gm.graph.nodes:
        op = _RANGE_CHANGING.get(n.target) if n.op == "call_function" else None
        if op is None:
            continue
        path = module_of(n)
        owner = _submodule(model, path)
        if owner is None or any(True for _ in owner.children()) or not path:
            seen[(path, op)] += 1
    return tuple(
        LintFinding("functional_op", path, f"functional {op} in {_shown(path, model)}" + (f" ({k} times)" if k > 1 else "")
                    + f"; use {_MODULE_FOR.get(op, f'a module for {op}')} so it has its own range")
        for (path, op), k in sorted(seen.items())
    )


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        return None


def convs_without_bn(gm: GraphModule) -> tuple[LintFinding, ...]:
    """Convolutions not followed by BatchNorm, except the last one (a prediction layer)."""
    convs = [n for n in gm.graph.nodes if n.op == "call_function" and n.target in _CONVS]
    out = []
    for n in convs[:-1]:
        users = list(n.users)
        if len(users) == 1 and users[0].target in _BATCH_NORMS:
            continue
        w = _weight(gm, n)
        depthwise = _groups(n) > 1 and w is not None and w.shape[1] == 1
        kind = "depthwise convolution" if depthwise else "convolution"
        out.append(LintFinding("conv_without_bn", module_of(n), f"{kind} '{_shown(module_of(n))}' has no BatchNorm after it"
                               + ("; TI: no exception for depthwise layers" if depthwise else "")))
    return tuple(out)


def wide_weight_ranges(gm: GraphModule, ratio: float = WIDE_RANGE_RATIO) -> tuple[LintFinding, ...]:
    """Conv/linear weights (BatchNorm folded) whose largest channel range is ``ratio`` x the median one."""
    out = []
    for n in gm.graph.nodes:
        if not (n.op == "call_function" and (n.target in _CONVS or n.target == aten.linear.default)):
            continue
        w = _weight(gm, n)
        if w is None or w.shape[0] < 2:
            continue
        per_channel = w.detach().float().reshape(w.shape[0], -1).abs().amax(dim=1) * _bn_scale(gm, n, w.shape[0]).abs()
        median = float(per_channel.median())
        widest = float(per_channel.max())
        if median > 0 and widest / median > ratio:
            bits = math.log2(widest / median)
            out.append(LintFinding("wide_weight_range", module_of(n),
                                   f"weights of '{_shown(module_of(n))}' span {widest / median:.0f}x the median channel's range "
                                   f"(~{bits:.1f} of the bits lost under per-tensor weights); train with weight decay, "
                                   "or allow per-channel weights"))
    return tuple(out)


def _attr(gm: GraphModule, node: object) -> torch.Tensor | None:
    if not (isinstance(node, Node) and node.op == "get_attr"):
        return None
    obj: object = gm
    for part in str(node.target).split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, torch.Tensor) else None


def _weight(gm: GraphModule, conv: Node) -> torch.Tensor | None:
    return _attr(gm, conv.args[1]) if len(conv.args) > 1 else None


def _groups(conv: Node) -> int:
    g = conv.args[6] if len(conv.args) > 6 else conv.kwargs.get("groups", 1)
    return int(g) if isinstance(g, int) else 1


def _bn_scale(gm: GraphModule, layer: Node, channels: int) -> torch.Tensor:
    """gamma / sqrt(var + eps) of a BatchNorm right after ``layer`` (ones without one)."""
    users = list(layer.users)
    if len(users) == 1 and users[0].target in _BATCH_NORMS:
        bn = users[0]
        gamma, var = _attr(gm, bn.args[1]), _attr(gm, bn.args[4])
        eps = bn.args[7] if bn.target == aten.batch_norm.default else bn.args[6]
        if gamma is not None and var is not None:
            return gamma.detach().float() / torch.sqrt(var.detach().float() + float(eps))  # type: ignore[arg-type]  # a number in the batch_norm schema
    return torch.ones(channels)
