"""Weight scales wide enough that each int32 bias fits its accumulator with the products.

An int32 bias is stored in accumulator units: bias / (input scale x weight scale). A
channel whose weights are all near zero (pruned or dead, e.g. four channels of
EfficientNet-Lite's stem, followed by a ReLU6 that keeps them at 0) gets a tiny weight
scale, max|w| / 127, so its bias in those units is far beyond int32. The simulation
then clamps the bias to -2**31; an integer kernel adds the products to it and wraps
around to +2**31 (onnxruntime: 85 output steps where the simulation has 0, on about
half of such a channel's values).

``widen_for_int32_bias`` raises the weight scale of such a channel, before conversion,
until the bias plus the largest possible sum of products fits in int32. The channel's
weights lose resolution they did not have anyway (they round to a handful of codes
instead of nothing useful), the bias is exact again, and simulation and runtime agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.fx import GraphModule, Node

from qconvert.core.graph import OpKind, attr_of, module_of, op_kind
from qconvert.core.observer import QObserver

__all__ = ["WidenedWeightScale", "int32_bias_limit", "widen_for_int32_bias"]

_INT32_MAX = 2**31 - 1
#: Never leave the bias less room than this, however large the layer's fan-in.
_MIN_LIMIT = 2**24


@dataclass(frozen=True)
class WidenedWeightScale:
    """One layer whose weight scale was raised on some channels so its int32 bias fits."""

    layer: str
    channels: int
    #: Largest factor a channel's weight scale was multiplied by.
    max_factor: float

    def note(self) -> str:
        return (f"'{self.layer}': weight scale raised on {self.channels} channel(s) (up to {self.max_factor:.3g}x) so the "
                "int32 bias fits the accumulator (weights near zero, bias far from it)")


def int32_bias_limit(fan_in: int, input_span: int, weight_peak: int) -> int:
    """The largest |bias| (accumulator units) that cannot overflow int32 with ``fan_in`` products,
    each at most ``input_span`` (input integers minus zero point) times ``weight_peak``."""
    return max(_INT32_MAX - fan_in * input_span * weight_peak, _MIN_LIMIT)


def _observer(gm: GraphModule, node: object) -> QObserver | None:
    if not isinstance(node, Node) or node.op != "call_module":
        return None
    mod = gm.get_submodule(str(node.target))
    return mod if isinstance(mod, QObserver) else None


def _bias_value(gm: GraphModule, node: object) -> torch.Tensor | None:
    """The float bias behind a conv/linear's bias argument (through its derived-quantization module)."""
    while isinstance(node, Node) and node.op == "call_module" and node.args:
        node = node.args[0]
    if isinstance(node, Node) and node.op == "get_attr":
        value = attr_of(gm, str(node.target))
        return value.detach() if isinstance(value, torch.Tensor) else None
    return None


@torch.no_grad()
def widen_for_int32_bias(prepared: GraphModule) -> tuple[WidenedWeightScale, ...]:
    """Raise weight scales (``scale_override``) where the int32 bias would not fit; returns the layers changed.

    Runs on a prepared graph whose observers hold their statistics and weights, before
    ``fold_requantization`` (which folds its fixed-point ratios into the widened scales)
    and before conversion.
    """
    widened: list[WidenedWeightScale] = []
    for node in prepared.graph.nodes:
        if op_kind(node) != OpKind.WEIGHTED or len(node.args) < 3:
            continue
        x_obs, w_obs = _observer(prepared, node.args[0]), _observer(prepared, node.args[1])
        bias = _bias_value(prepared, node.args[2])
        if x_obs is None or w_obs is None or w_obs.spec.role != "weight" or bias is None or w_obs.weight is None:
            continue
        s_x = x_obs.calculate_qparams()[0].double().reshape(())
        s_w = w_obs.calculate_qparams()[0].double()
        weight = w_obs.weight
        out_axis = w_obs.ch_axis if w_obs.ch_axis is not None else 0
        fan_in = max(weight.numel() // max(weight.shape[out_axis], 1), 1)
        limit = int32_bias_limit(fan_in, int(x_obs.quant_max - x_obs.quant_min), max(abs(int(w_obs.quant_min)), int(w_obs.quant_max)))
        need = bias.double().abs().flatten() / (s_x * limit)  # the smallest weight scale that keeps each bias within limit
        if not w_obs.spec.per_channel:
            need = need.max().reshape(s_w.shape)
        if need.shape != s_w.shape or not bool((need > s_w).any()):
            continue
        new = torch.maximum(s_w, need)
        if w_obs.spec.scheme.power_of_two:
            new = torch.exp2(torch.ceil(torch.log2(new)))
        w_obs.scale_override = new.float()
        grown = need > s_w
        widened.append(WidenedWeightScale(module_of(node) or node.name, int(grown.sum()), float((new / s_w).max())))
    return tuple(widened)
