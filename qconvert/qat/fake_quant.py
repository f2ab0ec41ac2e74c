"""Fake quantization with a trainable range: one quantized tensor while training.

The forward pass computes scale and zero point from the range exactly as the core
does from a calibrated range (``qconvert.core.scheme.qparams_from_range``: float64,
widened to include 0, power-of-two rounding up), then rounds and clamps as torch's
``quantize_per_tensor``/``quantize_per_channel`` do. ``deployed_range`` returns the
interval that gives back those very parameters, so a build from the learned ranges
quantizes every tensor on the grid it was trained on.

How a range trains (``QATConfig``):

- ``ema``: observed min/max, a moving average, no gradient;
- ``pact``: the clipping bounds are parameters and get the gradient of the values they
  clip (PACT, Choi et al. 2018); the grid follows the bounds, rounded up to a power of
  two when the scheme asks for it (TI's PACT2);
- ``lsq``: the bounds are parameters and get the full gradient of the fake quantizer,
  rounding error included, scaled by 1/sqrt(N * qmax) (LSQ, Esser et al. 2020; LSQ+ for
  the offset of asymmetric schemes);
- ``minmax`` (weights): each forward uses the tensor's current min/max, as a build does.

Rounding uses the straight-through estimator: its gradient is that of the identity
inside the grid and zero where the value is clamped.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from qconvert.core.plan import TensorQuant
from qconvert.core.scheme import int_range

__all__ = ["BiasFakeQuant", "FakeQuant", "RangeLearning"]

RangeLearning = Literal["ema", "pact", "lsq", "minmax", "fixed"]

_EPS = float(torch.finfo(torch.float32).eps)


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _pot_ste(x: torch.Tensor) -> torch.Tensor:
    """2**ceil(log2 x) forward, identity backward."""
    return x + (torch.exp2(torch.ceil(torch.log2(x))) - x).detach()


def _grad_scaled(x: torch.Tensor, g: float) -> torch.Tensor:
    """x forward, g * gradient backward (LSQ's step-size gradient scale)."""
    return (x - x * g).detach() + x * g


class FakeQuant(nn.Module):
    """Quantize-dequantize one tensor on the grid of its ``TensorQuant`` decision.

    Symmetric schemes keep one bound ``amax`` (the range is [-amax, amax]); the others
    keep ``lo`` and ``hi``. Per-channel weights keep one value per output channel.
    A ``passive`` instance only observes (its tensor is quantized by some other target's
    placement) and returns its input unchanged.
    """

    amax: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    initialized: torch.Tensor

    def __init__(self, spec: TensorQuant, learn: RangeLearning, channels: int = 1, ema_decay: float = 0.99,
                 passive: bool = False) -> None:
        super().__init__()
        self.spec = spec
        rng = int_range(spec.scheme, narrow=spec.role == "weight")
        self.qmin, self.qmax = rng.qmin, rng.qmax
        self.sym = spec.scheme.mode == "sym"
        self.pot = spec.scheme.power_of_two
        self.axis = (spec.ch_axis or 0) if spec.per_channel else None
        self.learn: RangeLearning = "fixed" if spec.fixed_range is not None else learn
        self.ema_decay = ema_decay
        self.passive = passive
        #: Set by ``QATModel`` each step: whether ema ranges still move.
        self.observing = True
        #: The scale of the last forward pass, which a ``BiasFakeQuant`` derives its own from.
        self.last_scale = torch.ones(())
        shape = (channels,) if self.axis is not None else ()
        for name in ("amax",) if self.sym else ("lo", "hi"):
            if self.learn in ("pact", "lsq"):
                self.register_parameter(name, nn.Parameter(torch.zeros(shape)))
            else:
                self.register_buffer(name, torch.zeros(shape))
        # uint8, not bool: DDP broadcasts buffers, and gloo has no bool
        self.register_buffer("initialized", torch.tensor(int(self.learn == "fixed"), dtype=torch.uint8))
        if spec.fixed_range is not None:
            lo, hi = spec.fixed_range
            self._set_range(torch.tensor(lo), torch.tensor(hi))

    # -- range state ---------------------------------------------------------------

    @torch.no_grad()
    def _set_range(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        if self.sym:
            self.amax.copy_(torch.maximum(-lo, hi).reshape(self.amax.shape).float())
        else:
            self.lo.copy_(lo.reshape(self.lo.shape).float())
            self.hi.copy_(hi.reshape(self.hi.shape).float())
        self.initialized.fill_(1)

    @torch.no_grad()
    def init_from_qparams(self, scale: torch.Tensor, zero_point: torch.Tensor) -> None:
        """Start from a post-training calibration's parameters (the same grid exactly)."""
        lo, hi = self._grid_ends(scale.double(), zero_point.double())
        self._set_range(lo, hi)

    def _grid_ends(self, scale: torch.Tensor, zp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.sym:
            half = self._sym_half()
            return -scale * half, scale * half
        return (self.qmin - zp) * scale, (self.qmax - zp) * scale

    def _sym_half(self) -> float:
        # as qparams_from_range: a symmetric range spread over the larger half of the codes
        return float(min(-self.qmin, self.qmax))

    def _observe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach()
        if self.axis is None:
            lo, hi = torch.aminmax(x)
            return lo, hi
        rows = x.transpose(0, self.axis).reshape(x.shape[self.axis], -1)
        return rows.amin(dim=1), rows.amax(dim=1)

    @torch.no_grad()
    def _update(self, x: torch.Tensor) -> None:
        if self.learn == "fixed":
            return
        if not bool(self.initialized) or self.learn == "minmax":
            self._set_range(*self._observe(x))
            return
        if self.learn == "ema" and self.training and self.observing:
            lo, hi = self._observe(x)
            d = self.ema_decay
            if self.sym:
                self.amax.mul_(d).add_((1 - d) * torch.maximum(-lo, hi))
            else:
                self.lo.mul_(d).add_((1 - d) * lo)
                self.hi.mul_(d).add_((1 - d) * hi)

    # -- quantization parameters -----------------------------------------------------

    def qparams(self, numel: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale (float32) and zero point (float, integral) from the current range.

        For ``lsq`` the range's gradient is scaled by 1/sqrt(numel * qmax); ``numel`` is
        the number of values sharing one scale.
        """
        g = 1.0 / (max(numel, 1) * max(self.qmax, 1)) ** 0.5 if self.learn == "lsq" else 1.0
        if self.sym:
            amax = _grad_scaled(self.amax, g).double().abs()
            scale = torch.clamp(amax / self._sym_half(), min=_EPS)
            zp = torch.zeros_like(scale)
        else:
            lo = torch.clamp(_grad_scaled(self.lo, g).double(), max=0.0)
            hi = torch.clamp(_grad_scaled(self.hi, g).double(), min=0.0)
            scale = torch.clamp((hi - lo) / float(self.qmax - self.qmin), min=_EPS)
        if self.pot:
            scale = _pot_ste(scale)
        if not self.sym:
            zp = torch.clamp(_round_ste(self.qmin - lo / scale), self.qmin, self.qmax)
        return scale.float(), zp.float()

    def deployed_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (lo, hi) a build turns into exactly this module's scale and zero point (float64)."""
        with torch.no_grad():
            scale, zp = self.qparams()
            return self._grid_ends(scale.double(), zp.double())

    # -- forward ---------------------------------------------------------------------

    def _shape(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.axis is None:
            return t
        shape = [1] * x.dim()
        shape[self.axis] = -1
        return t.reshape(shape)

    def _fake_quant(self, x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor) -> torch.Tensor:
        """torch's fused fake quantizers: the same float32 arithmetic as ``quantized_decomposed``'s
        quantize/dequantize (x * (1 / scale), round half to even, clamp), at a fraction of the cost.
        The learnable variants give the scale and zero point LSQ/LSQ+ gradients."""
        if self.learn == "lsq":
            if self.axis is None:
                return torch._fake_quantize_learnable_per_tensor_affine(x, scale.reshape(1), zp.reshape(1), self.qmin, self.qmax, 1.0)
            return torch._fake_quantize_learnable_per_channel_affine(x, scale, zp, self.axis, self.qmin, self.qmax, 1.0)
        scale, zp_int = scale.detach(), zp.detach().to(torch.int32)
        if self.axis is None:
            return torch.fake_quantize_per_tensor_affine(x, scale.reshape(()), zp_int.reshape(()), self.qmin, self.qmax)
        return torch.fake_quantize_per_channel_affine(x, scale, zp_int, self.axis, self.qmin, self.qmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._update(x)
        if self.passive:
            return x
        if self.spec.role == "weight":
            numel = x.numel() // (x.shape[self.axis] if self.axis is not None else 1)
        else:  # features per sample (LSQ's N_F): independent of the batch size, and of how DDP shards it
            numel = x[0].numel() if x.dim() > 1 else x.numel()
        scale, zp = self.qparams(numel)
        self.last_scale = scale.detach()
        if self.learn != "pact":
            return self._fake_quant(x, scale, zp)
        y = self._fake_quant(x, scale.detach(), zp.detach())
        # PACT: the bounds get the gradient of the values clipped at the grid's ends.
        lo_end, hi_end = self._grid_ends(scale.detach(), zp.detach())
        above = (x > self._shape(hi_end, x)).to(x.dtype)
        below = (x < self._shape(lo_end, x)).to(x.dtype)
        if self.sym:
            a = self._shape(self.amax, x)
            return y + above * (a - a.detach()) - below * (a - a.detach())
        lo, hi = self._shape(self.lo, x), self._shape(self.hi, x)
        return y + above * (hi - hi.detach()) + below * (lo - lo.detach())

    def extra_repr(self) -> str:
        return f"key={self.spec.key}, learn={self.learn}, bits={self.spec.scheme.bits}, mode={self.spec.scheme.mode}" + (
            ", passive" if self.passive else "")


class BiasFakeQuant(nn.Module):
    """An int32 bias on the grid a build derives: scale = input scale x weight scale, zero point 0.

    Below 8 bits that grid is coarse (4-bit inputs and weights put biases on steps of a few
    hundredths), so it is trained with, not left to the build. The two sources are
    referenced, not owned: they are registered where they quantize their own tensors.
    """

    def __init__(self, input_fq: FakeQuant, weight_fq: FakeQuant) -> None:
        super().__init__()
        self._sources = (input_fq, weight_fq)

    def forward(self, bias: torch.Tensor) -> torch.Tensor:
        act, weight = self._sources
        scale = (act.last_scale * weight.last_scale).float()
        q = torch.clamp(_round_ste(bias * (1.0 / scale)), -(2**31), 2**31 - 1)
        return q * scale
