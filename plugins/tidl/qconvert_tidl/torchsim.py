"""The core's power-of-two fake-quant torch model, with TIDL's rounding.

torch's ``quantize_per_tensor`` rounds half to even; TIDL rounds half up when
it requantizes an accumulator (``TIDL_roundSat``) and half away from zero when
it converts a float input (``TIDL_refDataConvert``). With power-of-two scales
every value reaching a quantize node is an exact dyadic number, so ties are
frequent (an accumulator ending in binary ...1000 before a 4-bit shift) and the
two rules really disagree. This copy of the Q/DQ graph swaps in TIDL's rules:
it is the torch reference the integer simulation must match bit for bit, while
the unmodified graph stays the core's simulation (its difference is reported).
"""

from __future__ import annotations

import copy

import torch
from torch.fx import GraphModule

__all__ = ["quantize_half_away", "quantize_half_up", "tidl_rounding_graph"]

_Q = torch.ops.quantized_decomposed.quantize_per_tensor.default


def quantize_half_up(x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int, dtype: torch.dtype) -> torch.Tensor:
    """Requantization as TIDL does it: floor(x / s + 1/2), then saturation (exact for power-of-two ``s``)."""
    q = torch.floor(x * (1.0 / scale) + 0.5) + zero_point
    return torch.clamp(q, qmin, qmax).to(dtype)


def quantize_half_away(x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int, dtype: torch.dtype) -> torch.Tensor:
    """Float input conversion as TIDL does it: round half away from zero, then saturation."""
    v = x * (1.0 / scale)
    q = torch.trunc(v + torch.copysign(torch.full_like(v, 0.5), v)) + zero_point
    return torch.clamp(q, qmin, qmax).to(dtype)


def tidl_rounding_graph(qgraph: GraphModule) -> GraphModule:
    """A copy of the Q/DQ graph whose activation quantizers round as TIDL does."""
    gm = copy.deepcopy(qgraph)
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target == _Q:
            source = n.args[0]
            n.target = quantize_half_away if getattr(source, "op", None) == "placeholder" else quantize_half_up
    gm.recompile()
    return gm
