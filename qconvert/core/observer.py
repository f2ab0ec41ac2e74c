"""The observer inserted at every quantized tensor: streams statistics, then
turns them into quantization parameters for the scheme it was built with.

Statistics are independent of the scheme, so one calibration pass serves every
target; parameters are derived later from a loaded ``TensorStats``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchao.quantization.pt2e.observer import ObserverBase

from qconvert.core.plan import TensorQuant
from qconvert.core.ranges import choose_range, mse_clip
from qconvert.core.scheme import int_range, qparams_from_range
from qconvert.core.stats import TensorStats, grow_histogram
from qconvert.recipe.model import CalibrationConfig, QScheme

__all__ = ["QObserver", "RunningStats"]

_TINY_RANGE = 2.0**-24


class RunningStats:
    """Streaming accumulator behind ``TensorStats``; memory is O(bins), not O(samples).

    Min and max are exact over every value. Moments and the histogram use a fixed
    stride sample of at most ``sample_limit`` values per batch (0: all values), which
    keeps calibration close to the cost of a plain forward pass on large activations.
    """

    def __init__(self, key: str, module: str, bins: int, ema_decay: float, sample_limit: int = 0) -> None:
        self.key, self.module, self.bins, self.ema_decay = key, module, bins, ema_decay
        self.sample_limit = sample_limit
        self.min, self.max = math.inf, -math.inf
        self.sum_batch_min = self.sum_batch_max = 0.0
        self.ema_min = self.ema_max = 0.0
        self.batches = self.count = 0
        self.sum = self.sum_sq = 0.0
        self.hist_range = 0.0
        self.hist: np.ndarray | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        lo_t, hi_t = torch.aminmax(x)
        lo, hi = float(lo_t), float(hi_t)
        # The sample is small: numpy works on it single-threaded, with no thread-pool
        # synchronisation per tiny op (which costs more than the op on a busy machine).
        flat = x.reshape(-1).numpy()
        step = flat.size // self.sample_limit if self.sample_limit else 1
        sample = flat[::step] if step > 1 else flat
        self.sum += float(sample.sum(dtype=np.float64))
        self.sum_sq += float(np.dot(sample, sample))
        self.count += sample.size
        if self.batches == 0:
            self.ema_min, self.ema_max = lo, hi
        else:
            d = self.ema_decay
            self.ema_min, self.ema_max = d * self.ema_min + (1 - d) * lo, d * self.ema_max + (1 - d) * hi
        self.batches += 1
        self.sum_batch_min += lo
        self.sum_batch_max += hi
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self._update_hist(sample, max(abs(lo), abs(hi)))

    def _update_hist(self, x: np.ndarray, amax: float) -> None:
        # The grid is [-R, R) with R a power of two strictly above |x|, and bins a power of
        # two, so x * bins / 2R is exact and floor() gives the same bin on any grid size:
        # shards binned on different grids merge into exactly the single-pass histogram.
        needed = 2.0 ** (math.floor(math.log2(max(amax, _TINY_RANGE))) + 1)
        if self.hist is None:
            self.hist_range = needed
            self.hist = np.zeros(self.bins, dtype=np.int64)
        elif needed > self.hist_range:
            self.hist, self.hist_range = grow_histogram(self.hist, self.hist_range, needed), needed
        idx = np.floor(x * np.float32(self.bins / (2.0 * self.hist_range)))
        idx += self.bins // 2  # integers below 2**24 are exact in float32
        self.hist += np.bincount(idx.astype(np.int64), minlength=self.bins)

    def snapshot(self) -> TensorStats:
        hist = self.hist.copy() if self.hist is not None else np.zeros(self.bins, np.int64)
        return TensorStats(
            key=self.key, module=self.module, min=self.min, max=self.max,
            sum_batch_min=self.sum_batch_min, sum_batch_max=self.sum_batch_max,
            ema_min=self.ema_min, ema_max=self.ema_max, batches=self.batches, count=self.count,
            sum=self.sum, sum_sq=self.sum_sq, hist_range=self.hist_range, hist=hist,
        )


class QObserver(ObserverBase):
    """torchao-compatible observer carrying one ``TensorQuant`` decision."""

    def __init__(self, spec: TensorQuant, calib: CalibrationConfig, **kwargs: Any) -> None:
        rng = int_range(spec.scheme, narrow=spec.role == "weight" and spec.narrow)
        super().__init__(dtype=rng.dtype, is_dynamic=False)
        self.spec, self.calib, self.rng = spec, calib, rng
        self.quant_min, self.quant_max = rng.qmin, rng.qmax
        sym = spec.scheme.mode == "sym"
        if spec.per_channel:
            self.qscheme = torch.per_channel_symmetric if sym else torch.per_channel_affine
            self.ch_axis = spec.ch_axis if spec.ch_axis is not None else 0
        else:
            self.qscheme = torch.per_tensor_symmetric if sym else torch.per_tensor_affine
            self.ch_axis = None  # type: ignore[assignment]  # torchao's observer base declares an int; per tensor has none
        self.running = RunningStats(spec.key, spec.module, calib.bins, calib.ema_decay, calib.hist_samples)
        self.loaded: TensorStats | None = None
        self.weight: torch.Tensor | None = None
        #: Set by ``load_stats`` when a TIDL-style sym activation turns out non-negative.
        self.unsigned_scheme: QScheme | None = None
        #: A weight range learned in quantization-aware training, used as is (``quantize(weight_ranges=)``).
        self.learned_range: tuple[torch.Tensor, torch.Tensor] | None = None
        #: Weight scales replaced after the fact (``qconvert.core.requantize`` folds a fixed-point
        #: requantization multiplier into them); the zero point stays the scheme's.
        self.scale_override: torch.Tensor | None = None
        #: An activation range chosen after calibration (``qconvert.core.act_ranges``), used instead of the method's.
        self.range_override: tuple[float, float] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.role == "weight":
            self.weight = x.detach()
        elif x.is_floating_point() and x.numel() > 0:
            self.running.update(x)
        return x

    def stats(self) -> TensorStats:
        return self.loaded if self.loaded is not None else self.running.snapshot()

    def load_stats(self, stats: TensorStats) -> None:
        self.loaded = stats
        nonnegative = stats.batches > 0 and choose_range(stats, self.spec, self.calib)[0] >= 0.0
        if self.spec.unsigned_if_nonnegative and self.spec.role == "activation" and nonnegative:
            self._use_unsigned()

    def _use_unsigned(self) -> None:
        """TIDL's unsigned form of a symmetric scheme: [0, 2**bits - 1], zero point 0.

        Decided once the statistics are known and before conversion, which reads
        ``dtype``, ``quant_min`` and ``quant_max`` from the observer.
        """
        self.unsigned_scheme = self.spec.scheme.model_copy(update={"mode": "asym_u"})
        self.rng = int_range(self.unsigned_scheme)
        self.dtype, self.quant_min, self.quant_max = self.rng.dtype, self.rng.qmin, self.rng.qmax

    def weight_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.learned_range is not None:
            return self._learned_at_granularity(*self.learned_range)
        if self.weight is None:
            raise RuntimeError(f"weight observer '{self.spec.key}' never saw its weight")
        w = self.weight.float()
        rows = w.transpose(0, self.ch_axis).reshape(w.shape[self.ch_axis], -1) if self.spec.per_channel else w.reshape(1, -1)
        if self.spec.method == "mse":
            sym = self.spec.scheme.mode == "sym"
            ranges = [mse_clip(r.double().numpy(), np.ones(r.numel()), float(r.min()), float(r.max()), self.spec.scheme.bits,
                               sym) for r in rows]
            lo, hi = torch.tensor([r[0] for r in ranges]), torch.tensor([r[1] for r in ranges])
        else:
            lo, hi = rows.amin(dim=1), rows.amax(dim=1)
        return (lo, hi) if self.spec.per_channel else (lo.reshape(()), hi.reshape(()))

    def _learned_at_granularity(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A learned range at this observer's granularity: one range for every channel, or the
        channels' union for a per-tensor scheme (a variant that changes granularity, e.g. TIDL's)."""
        if self.spec.per_channel and lo.dim() == 0 and self.weight is not None:
            n = self.weight.shape[self.ch_axis]
            return lo.expand(n).clone(), hi.expand(n).clone()
        if not self.spec.per_channel and lo.dim() > 0:
            return lo.min().reshape(()), hi.max().reshape(())
        return lo, hi

    @torch.no_grad()
    def calculate_qparams(self, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.role == "weight":
            lo, hi = self.weight_range()
        else:
            lo_f, hi_f = self.range_override or choose_range(self.stats(), self.spec, self.calib)
            lo, hi = torch.tensor(lo_f), torch.tensor(hi_f)
        scale, zp = qparams_from_range(lo, hi, self.unsigned_scheme or self.spec.scheme, self.rng)
        if self.scale_override is not None:
            scale = self.scale_override.reshape(scale.shape).to(scale.dtype)
        if not self.spec.per_channel:
            scale, zp = scale.reshape(1), zp.reshape(1)
        return scale, zp

    def extra_repr(self) -> str:
        return f"key={self.spec.key}, role={self.spec.role}, scheme={self.spec.scheme}"
