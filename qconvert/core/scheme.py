"""Integer ranges and scale/zero-point arithmetic for one resolved scheme.

This is the single place where (bits, mode) becomes a storage dtype and a
[qmin, qmax] range, so the simulation and every exporter agree on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qconvert.recipe.model import QScheme

__all__ = ["IntRange", "int_range", "qparams_from_range"]


@dataclass(frozen=True)
class IntRange:
    """Storage dtype and the integer interval a scheme may use inside it."""

    dtype: torch.dtype
    qmin: int
    qmax: int


def int_range(scheme: QScheme, *, narrow: bool = False) -> IntRange:
    """Map a scheme to its storage dtype and integer interval.

    ``narrow`` drops the most negative code of a symmetric signed range
    ([-127, 127] for 8 bits), which weights use so that negation is exact
    and TensorRT/TFLite accept them.
    """
    bits = scheme.bits
    if scheme.mode == "asym_u":
        dtype = torch.uint8 if bits <= 8 else torch.uint16
        return IntRange(dtype, 0, 2**bits - 1)
    dtype = torch.int8 if bits <= 8 else torch.int16
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if scheme.mode == "sym" and narrow:
        qmin = -qmax
    return IntRange(dtype, qmin, qmax)


def _pot_ceil(x: torch.Tensor) -> torch.Tensor:
    return torch.exp2(torch.ceil(torch.log2(x)))


def qparams_from_range(
    lo: torch.Tensor, hi: torch.Tensor, scheme: QScheme, rng: IntRange
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point that cover [lo, hi] (widened to include 0).

    Works element-wise, so per-channel ranges give per-channel parameters.
    """
    lo = torch.minimum(lo.double(), torch.zeros_like(lo, dtype=torch.float64))
    hi = torch.maximum(hi.double(), torch.zeros_like(hi, dtype=torch.float64))
    eps = torch.finfo(torch.float32).eps
    if scheme.mode == "sym":
        amax = torch.maximum(-lo, hi)
        # A symmetric range of width 2*amax spread over the larger half of the codes.
        half = float(min(-rng.qmin, rng.qmax)) if rng.qmin < 0 else float(rng.qmax)
        if rng.qmin >= 0:  # symmetric in an unsigned container is not offered
            half = rng.qmax / 2.0
        scale = torch.clamp(amax / half, min=eps)
        if scheme.power_of_two:
            scale = _pot_ceil(scale)
        zp = torch.zeros_like(scale, dtype=torch.int64)
        return scale.float(), zp
    scale = torch.clamp((hi - lo) / float(rng.qmax - rng.qmin), min=eps)
    if scheme.power_of_two:
        scale = _pot_ceil(scale)
    zp = torch.round(rng.qmin - lo / scale).clamp(rng.qmin, rng.qmax).to(torch.int64)
    return scale.float(), zp


def pot_exponent(scale: float) -> int:
    """The shift n with scale == 2**-n, for power-of-two scales."""
    return -round(math.log2(scale))
