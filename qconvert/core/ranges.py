"""Range methods: from a tensor's statistics to the clipping interval [lo, hi].

Every method works from ``TensorStats`` alone, so methods can be swapped on a
saved stats directory without reading data again. Histogram methods work on the
power-of-two grid [-R, R] the observer collects; a non-negative tensor (after
ReLU) uses only the positive half, so none of its codes are spent on negatives.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from qconvert.core.plan import TensorQuant
from qconvert.core.stats import TensorStats
from qconvert.recipe.model import CalibrationConfig

__all__ = ["METHODS", "aciq_alpha", "choose_range"]

Range = tuple[float, float]


def choose_range(stats: TensorStats, spec: TensorQuant, calib: CalibrationConfig) -> Range:
    """The interval to quantize ``stats``'s tensor to, under ``spec.method``.

    A fixed range (ReLU6 outputs) wins; a clamp (tanh/sigmoid inputs) narrows the
    result; clipping never widens the observed range.
    """
    if spec.fixed_range is not None:
        return spec.fixed_range
    if stats.batches == 0:
        return 0.0, 0.0
    lo, hi = METHODS[spec.method](stats, spec, calib)
    lo, hi = max(lo, stats.min), min(hi, stats.max)
    if spec.clamp is not None:
        lo, hi = max(lo, spec.clamp[0]), min(hi, spec.clamp[1])
    return lo, hi


def _minmax(s: TensorStats, spec: TensorQuant, c: CalibrationConfig) -> Range:
    return s.min, s.max


def _avg(s: TensorStats, spec: TensorQuant, c: CalibrationConfig) -> Range:
    return s.avg_min, s.avg_max


def _ema(s: TensorStats, spec: TensorQuant, c: CalibrationConfig) -> Range:
    return s.ema_min, s.ema_max


def _n_std(s: TensorStats, spec: TensorQuant, c: CalibrationConfig) -> Range:
    return s.mean - c.n_std * s.std, s.mean + c.n_std * s.std


def _levels(s: TensorStats, spec: TensorQuant) -> int:
    """Quantization levels available over the clipped interval."""
    return 2 ** spec.scheme.bits


# -- ACIQ (Banner, Nahshan, Soudry 2019): analytical clipping for a Gaussian or Laplace prior ----

def _laplace_mse(alpha: float, b: float, levels: int) -> float:
    # clipping noise of both tails + uniform quantization noise over [-alpha, alpha]
    return 2.0 * b * b * math.exp(-alpha / b) + alpha * alpha / (3.0 * levels * levels)


def _gauss_mse(alpha: float, sigma: float, levels: int) -> float:
    tail = 1.0 - math.erf(alpha / (sigma * math.sqrt(2.0)))
    clip = ((alpha * alpha + sigma * sigma) * tail
            - alpha * sigma * math.sqrt(2.0 / math.pi) * math.exp(-alpha * alpha / (2 * sigma * sigma)))
    return clip + alpha * alpha / (3.0 * levels * levels)


def aciq_alpha(kind: str, spread: float, bits: int) -> float:
    """The clip alpha minimising expected MSE for a zero-mean prior with scale ``spread``.

    Solved numerically (golden-section on a bracket), so any bit width works;
    Banner et al.'s table (e.g. 2.83b, 3.89b, 5.03b for 2-4 bits, Laplace) is the check.
    """
    if spread <= 0:
        return 0.0
    levels = 2**bits
    f = (lambda a: _laplace_mse(a, spread, levels)) if kind == "laplace" else (lambda a: _gauss_mse(a, spread, levels))
    lo, hi = 0.0, spread * (4.0 * bits + 8.0)
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = f(a), f(b)
    for _ in range(200):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = f(b)
    return (lo + hi) / 2.0


def _aciq(kind: str) -> Callable[[TensorStats, TensorQuant, CalibrationConfig], Range]:
    def method(s: TensorStats, spec: TensorQuant, c: CalibrationConfig) -> Range:
        spread = s.laplace_b if kind == "laplace" else s.std
        alpha = aciq_alpha(kind, spread, spec.scheme.bits)
        if s.min >= 0.0:  # one-sided data: all levels on [0, mean + alpha]
            return 0.0, s.mean + alpha
        return s.mean - alpha, s.mean + alpha

    return method


# -- histogram methods -------------------------------------------------------------------------

def _edges(s: TensorStats) -> np.ndarray:
    return np.linspace(-s.hist_range, s.hist_range, s.hist.size + 1)


def _percentile(s: TensorStats, spec: TensorQuant, c: CalibrationConfig) -> Range:
    tail = (100.0 - c.percentile) / 100.0
    lo = _quantile(s, tail) if s.min < 0 else 0.0
    return lo, _quantile(s, 1.0 - tail)


def _quantile(s: TensorStats, q: float) -> float:
    """The q-quantile, interpolated linearly inside the bin where the CDF crosses q."""
    cdf = np.cumsum(s.hist) / max(float(s.hist.sum()), 1.0)
    edges = _edges(s)
    idx = min(int(np.searchsorted(cdf, q, side="left")), s.hist.size - 1)
    prev = cdf[idx - 1] if idx > 0 else 0.0
    frac = (q - prev) / (cdf[idx] - prev) if cdf[idx] > prev else 1.0
    return float(edges[idx] + frac * (edges[idx + 1] - edges[idx]))


def _magnitude_hist(s: TensorStats) -> tuple[np.ndarray, float]:
    """Histogram of |x| on [0, R] with bins/2 bins (folds the negative half)."""
    half = s.hist.size // 2
    pos = s.hist[half:].astype(np.float64)
    neg = s.hist[:half][::-1].astype(np.float64)
    return pos + neg, s.hist_range


def entropy_threshold(hist: np.ndarray, levels: int, start: int | None = None) -> int:
    """TensorRT-style KL calibration: the bin count i minimising KL(P_i || Q_i).

    P_i is the histogram clipped at bin i (outliers added to the last kept bin);
    Q_i is P_i merged into ``levels`` groups and spread back uniformly over each
    group's non-empty bins.
    """
    nbins = hist.size
    start = start or levels
    best_i, best_kl = nbins, math.inf
    total = hist.sum()
    if total == 0:
        return nbins
    nz_last = int(np.nonzero(hist)[0][-1]) + 1
    for i in range(start, nbins + 1):
        if i > nz_last + levels:  # past the data every candidate equals the full histogram
            break
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()
        # split i bins into `levels` groups with as-even-as-possible sizes
        bounds = np.linspace(0, i, levels + 1).astype(np.int64)
        q = np.zeros(i)
        nonzero = hist[:i] > 0
        sums = np.add.reduceat(hist[:i], bounds[:-1]) if i >= levels else hist[:i]
        counts = np.add.reduceat(nonzero.astype(np.float64), bounds[:-1]) if i >= levels else nonzero.astype(np.float64)
        group = np.repeat(np.arange(levels), np.diff(bounds)) if i >= levels else np.arange(i)
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        q = np.where(nonzero, spread[group], 0.0)
        pn = p / p.sum()
        qs = q.sum()
        if qs == 0:
            continue
        qn = q / qs
        mask = pn > 0
        if np.any(qn[mask] == 0):
            kl = math.inf
        else:
            kl = float(np.sum(pn[mask] * np.log(pn[mask] / qn[mask])))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return best_i


def _entropy(s: TensorStats, spec: TensorQuant, c: CalibrationConfig) -> Range:
    one_sided = s.min >= 0.0
    mag, r = _magnitude_hist(s)
    # coarsen to at most 2048 bins: KL on finer grids only costs time
    factor = max(1, mag.size // 2048)
    mag = mag.reshape(-1, factor).sum(axis=1) if factor > 1 else mag
    # Zero is exactly representable on every grid, so the spike of exact zeros (half of
    # a ReLU output) says nothing about where to clip; left in, it drives KL to tiny clips.
    if mag.size > 1:
        mag = mag.copy()
        mag[0] = mag[1]
    levels = 2 ** spec.scheme.bits if one_sided else 2 ** (spec.scheme.bits - 1)
    levels = min(levels, mag.size // 4)
    i = entropy_threshold(mag, levels)
    t = r * i / mag.size
    return (0.0 if one_sided else -t), t


def _mse(s: TensorStats, spec: TensorQuant, c: CalibrationConfig) -> Range:
    """Clip that minimises the squared quantization error over the histogram (grid search)."""
    edges = _edges(s)
    centers = (edges[:-1] + edges[1:]) / 2.0
    counts = s.hist.astype(np.float64)
    keep = counts > 0
    x, w = centers[keep], counts[keep]
    if x.size == 0:
        return s.min, s.max
    return mse_clip(x, w, s.min, s.max, spec.scheme.bits, spec.scheme.mode == "sym")


def mse_clip(x: np.ndarray, w: np.ndarray, vmin: float, vmax: float, bits: int, symmetric: bool) -> Range:
    """The range, shrunk from [vmin, vmax] on a 96-point grid, with the least weighted squared error."""
    lo0, hi0 = min(vmin, 0.0), max(vmax, 0.0)
    if symmetric:
        amax = max(-lo0, hi0)
        lo0, hi0 = -amax, amax
        qmin, qmax = -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    else:
        qmin, qmax = 0, 2**bits - 1
    fractions = np.linspace(0.05, 1.0, 96)[:, None]
    lo, hi = lo0 * fractions, hi0 * fractions
    scale = np.maximum((hi - lo) / (qmax - qmin), 1e-30)
    zero = 0.0 if symmetric else lo
    q = np.clip(np.round((x[None, :] - zero) / scale), qmin, qmax) * scale + zero
    err = np.sum(w[None, :] * (x[None, :] - q) ** 2, axis=1)
    best = int(np.argmin(err))
    return float(lo[best, 0]), float(hi[best, 0])


METHODS: dict[str, Callable[[TensorStats, TensorQuant, CalibrationConfig], Range]] = {
    "minmax": _minmax,
    "avg": _avg,
    "ema": _ema,
    "n_std": _n_std,
    "aciq_gauss": _aciq("gauss"),
    "aciq_laplace": _aciq("laplace"),
    "percentile": _percentile,
    "entropy": _entropy,
    "mse": _mse,
}
