"""Fixed-point requantization: each conv/linear's scale ratio as an integer multiplier and a shift.

An integer conv or linear kernel turns its int32 accumulator into the output's
integers by the ratio r = input scale x weight scale / output scale (one per output
channel with per-channel weights). Integer kernels do not hold r in floating point:
gemmlowp and TFLite store a signed 32-bit multiplier m in [2**30, 2**31) and a shift n
with r ~= m * 2**-(n + 31); NPUs often use fewer multiplier bits. Recipe key
``requantize`` picks the width and how m is rounded.

The approximation is folded into the weight scales: the weight scale of channel c
becomes approx(r_c) x output scale / input scale, so the Q/DQ graph stays standard
and every consumer of it (the torch simulation, each exporter) computes with the
approximated ratio. Weights are re-quantized on the folded scale (it differs from
the exact one by less than one part in 2**(bits-2)). Float32 scales hold 24
significant bits, so widths above 24 change a scale by at most its float rounding.
Adds, pools and concatenations keep exact scales: their integer kernels derive
their own multipliers and have no weight scale to fold into.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.fx import GraphModule, Node

from qconvert.core.graph import OpKind, module_of, op_kind
from qconvert.core.observer import QObserver
from qconvert.core.policy import QuantPolicy

__all__ = ["FoldedRequantization", "approximate_ratio", "fold_requantization", "multiplier_and_shift"]


@dataclass(frozen=True)
class FoldedRequantization:
    """One layer whose requantization ratios were replaced by fixed-point ones."""

    layer: str
    multiplier_bits: int
    rounding: str
    channels: int
    #: Largest |approximated / exact - 1| over the layer's channels.
    max_relative_error: float
    #: What the simulation computes for the layer (recipe ``requantize.arithmetic``; ``core.intarith``).
    arithmetic: str = "float"


def multiplier_and_shift(ratio: torch.Tensor, bits: int,
                         rounding: Literal["nearest", "floor"] = "nearest") -> tuple[torch.Tensor, torch.Tensor]:
    """Integers (m, n) with ratio ~= m * 2**-n and m in [2**(bits-2), 2**(bits-1)] (signed, ``bits`` wide).

    ``nearest`` rounds half away from zero, as TFLite's ``QuantizeMultiplier`` (``std::round``);
    a ratio that rounds up to 2**(bits-1) is kept as m = 2**(bits-2) with one shift less.
    """
    r = ratio.double()
    if torch.any(r <= 0) or not torch.all(torch.isfinite(r)):
        raise ValueError("requantization ratios must be positive and finite")
    exp = torch.floor(torch.log2(r))
    shift = (bits - 2) - exp  # r * 2**shift lies in [2**(bits-2), 2**(bits-1))
    scaled = r * torch.exp2(shift)
    m = torch.floor(scaled + 0.5) if rounding == "nearest" else torch.floor(scaled)
    top = m >= 2.0 ** (bits - 1)
    m = torch.where(top, m / 2, m)
    shift = torch.where(top, shift - 1, shift)
    return m.to(torch.int64), shift.to(torch.int64)


def approximate_ratio(ratio: torch.Tensor, bits: int, rounding: Literal["nearest", "floor"] = "nearest") -> torch.Tensor:
    """The float64 value m * 2**-n of ``multiplier_and_shift``."""
    m, n = multiplier_and_shift(ratio, bits, rounding)
    return m.double() * torch.exp2(-n.double())


def _observer(gm: GraphModule, node: object) -> QObserver | None:
    if not isinstance(node, Node) or node.op != "call_module":
        return None
    mod = gm.get_submodule(str(node.target))
    return mod if isinstance(mod, QObserver) else None


def _output_observer(gm: GraphModule, node: Node) -> QObserver | None:
    """The one observer quantizing the output of ``node`` (after a fused activation, if any)."""
    users = list(node.users)
    if len(users) == 1 and op_kind(users[0]) == OpKind.FUSED_ACT:
        users = list(users[0].users)
    found = {id(o): o for o in (_observer(gm, u) for u in users) if o is not None and o.spec.role == "activation"}
    return next(iter(found.values())) if len(found) == 1 else None


@torch.no_grad()
def fold_requantization(prepared: GraphModule, policy: QuantPolicy) -> tuple[FoldedRequantization, ...]:
    """Replace the weight scales of every quantized conv/linear whose layer asks for ``requantize``.

    Runs on a prepared graph whose observers hold their statistics and weights, before
    conversion; layers without an input, weight and output quantizer are left alone.
    """
    folded: list[FoldedRequantization] = []
    for node in prepared.graph.nodes:
        if op_kind(node) != OpKind.WEIGHTED or len(node.args) < 2:
            continue
        layer = module_of(node)
        req = policy.requantize(layer)
        x_obs, w_obs, out_obs = _observer(prepared, node.args[0]), _observer(prepared, node.args[1]), _output_observer(prepared, node)
        if req is None or x_obs is None or w_obs is None or out_obs is None or w_obs.spec.role != "weight":
            continue
        s_x = x_obs.calculate_qparams()[0].double().reshape(())
        s_out = out_obs.calculate_qparams()[0].double().reshape(())
        s_w = w_obs.calculate_qparams()[0].double()
        ratio = s_x * s_w / s_out
        approx = approximate_ratio(ratio, req.multiplier_bits, req.rounding)
        w_obs.scale_override = (approx * s_out / s_x).float()
        folded.append(FoldedRequantization(layer or node.name, req.multiplier_bits, req.rounding, int(ratio.numel()),
                                           float((approx / ratio - 1).abs().max()), req.arithmetic))
    return tuple(folded)
