"""Analytic bias correction from BatchNorm statistics (Nagel et al. 2019, "Data-Free
Quantization", sec. 4.2): no data pass.

A layer fed by ``BatchNorm -> (ReLU | ReLU6 | nothing)`` sees, per input channel, a
pre-activation that BatchNorm made Gaussian with mean ``beta`` and deviation
``|gamma|``; the clipped-Gaussian mean gives ``E[x]``. Means also pass through adds,
averages and shape ops. Quantizing the weights moves each output mean by
``(W_q - W) E[x]`` (zero padding included), which comes off the int32 bias. Layers whose input
mean cannot be derived that way keep their bias. Only the weight error is corrected;
the empirical correction also removes the activation error.
"""

from __future__ import annotations

import math
import operator

import torch
from torch.fx import GraphModule, Node

from qconvert.core.bias_correction import bias_param, corrected_layers, folded_reference
from qconvert.core.graph import arg_float, attr_of

__all__ = ["correct_biases_analytic"]

aten = torch.ops.aten
_BN = {aten._native_batch_norm_legit_no_training.default, aten.batch_norm.default}
_SAME_MEAN = {aten.dropout.default, aten.clone.default, aten.contiguous.default, aten.mean.dim,
              aten.adaptive_avg_pool2d.default, aten.avg_pool2d.default, aten.flatten.using_ints,
              aten.view.default, aten.reshape.default, aten.squeeze.dims, aten.squeeze.dim}
_RELU = {aten.relu.default, aten.relu_.default}
_CLAMP = {aten.hardtanh.default, aten.hardtanh_.default, aten.relu6.default}


class _Gaussian:
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean, self.std = mean.double(), std.double().abs().clamp_min(1e-12)

    def clipped_mean(self, lo: float, hi: float) -> torch.Tensor:
        """E[clip(X, lo, hi)] for X ~ N(mean, std^2), per channel."""
        def phi(z: torch.Tensor) -> torch.Tensor:
            return torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

        def cdf(z: torch.Tensor) -> torch.Tensor:
            return 0.5 * (1 + torch.erf(z / math.sqrt(2)))

        m, s = self.mean, self.std
        a = (lo - m) / s if math.isfinite(lo) else torch.full_like(m, -math.inf)
        b = (hi - m) / s if math.isfinite(hi) else torch.full_like(m, math.inf)
        inside = m * (cdf(b) - cdf(a)) + s * (phi(a) - phi(b))
        below = lo * cdf(a) if math.isfinite(lo) else torch.zeros_like(m)
        above = hi * (1 - cdf(b)) if math.isfinite(hi) else torch.zeros_like(m)
        return inside + below + above


def _bn_of(node: Node, graph: GraphModule) -> _Gaussian | None:
    bn = node.args[0] if node.target is operator.getitem and node.args[1] == 0 else node
    if not isinstance(bn, Node) or bn.target not in _BN:
        return None
    weight, bias = bn.args[1], bn.args[2]
    if not (isinstance(weight, Node) and isinstance(bias, Node)):
        return None
    return _Gaussian(attr_of(graph, bias.target), attr_of(graph, weight.target))


def _input_mean(node: object, graph: GraphModule, depth: int = 0) -> torch.Tensor | None:
    """Per-channel mean of ``node``'s value from the BatchNorms behind it, or None."""
    if not isinstance(node, Node) or depth > 32:
        return None
    gauss = _bn_of(node, graph)
    if gauss is not None:
        return gauss.mean
    if node.target in _RELU | _CLAMP:
        pre = _bn_of(node.args[0], graph) if isinstance(node.args[0], Node) else None
        if pre is None:
            return None
        lo, hi = (0.0, math.inf) if node.target in _RELU else (
            (0.0, 6.0) if node.target == aten.relu6.default else (arg_float(node, 1), arg_float(node, 2)))
        return pre.clipped_mean(lo, hi)
    if node.target in _SAME_MEAN:
        return _input_mean(node.args[0], graph, depth + 1)
    if node.target in (aten.add.Tensor, aten.add_.Tensor) and len(node.args) == 2:
        a, b = (_input_mean(x, graph, depth + 1) for x in node.args)
        return a + b if a is not None and b is not None and a.shape == b.shape else None
    return None


def _dequantized_weight(qgm: GraphModule, dq: Node) -> torch.Tensor:
    args = tuple(attr_of(qgm, a.target) if isinstance(a, Node) else a for a in dq.args)
    return dq.target(*args, **dq.kwargs).double()  # type: ignore[operator]  # fx types a call_function target as str too


def _mean_shift(node: Node, float_node: Node, dw: torch.Tensor, mean_in: torch.Tensor) -> torch.Tensor | None:
    """(W_q - W) E[x] per output channel: the layer run on its input shape filled with each channel's mean,
    so zero padding at the borders counts as it does on real inputs."""
    if node.target == aten.linear.default:
        return dw @ mean_in if dw.shape[1] == mean_in.numel() else None
    val = getattr(float_node.args[0], "meta", {}).get("val")
    if not isinstance(val, torch.Tensor) or val.dim() < 3 or val.shape[1] != mean_in.numel():
        return None
    spatial = [int(d) for d in val.shape[2:]]
    x = mean_in.reshape(1, -1, *([1] * len(spatial))).expand(1, mean_in.numel(), *spatial)
    out = node.target(x, dw, None, *node.args[3:])  # type: ignore[operator]  # fx types a call_function target as str too
    return out.mean(dim=[d for d in range(out.dim()) if d != 1]).reshape(-1)


@torch.no_grad()
def correct_biases_analytic(float_graph: GraphModule, qgm: GraphModule) -> int:
    """Correct the int32 biases of ``qgm`` in place from BatchNorm statistics; returns the layers corrected."""
    reference = folded_reference(float_graph)
    float_nodes = {n.name: n for n in float_graph.graph.nodes}
    ref_nodes = {n.name: n for n in reference.graph.nodes}
    done = 0
    for node in corrected_layers(reference, qgm):
        mean_in = _input_mean(float_nodes[node.name].args[0], float_graph) if node.name in float_nodes else None
        w_dq, w_float = node.args[1], ref_nodes[node.name].args[1]
        param = bias_param(qgm, node)
        if mean_in is None or param is None or not isinstance(w_dq, Node) or not isinstance(w_float, Node) \
                or w_float.op != "get_attr" or not isinstance(w_dq.args[0], Node):
            continue
        dw = _dequantized_weight(qgm, w_dq) - attr_of(reference, w_float.target).double()
        shift = _mean_shift(node, float_nodes[node.name], dw, mean_in)
        if shift is None:
            continue
        param.shift_by(-shift)
        done += 1
    return done
