"""Range methods: from a tensor's statistics to the clipping interval [lo, hi].

Every method works from ``TensorStats`` alone, so methods can be swapped on a
saved stats directory without reading data again.
"""

from __future__ import annotations

import numpy as np

from qconvert.core.plan import TensorQuant
from qconvert.core.stats import TensorStats
from qconvert.recipe.model import CalibrationConfig

__all__ = ["choose_range"]


def choose_range(stats: TensorStats, spec: TensorQuant, calib: CalibrationConfig) -> tuple[float, float]:
    """The interval to quantize ``stats``'s tensor to, under ``spec.method``."""
    if stats.batches == 0:
        return 0.0, 0.0
    method = spec.method
    if method == "minmax":
        lo, hi = stats.min, stats.max
    elif method == "avg":
        lo, hi = stats.avg_min, stats.avg_max
    elif method == "ema":
        lo, hi = stats.ema_min, stats.ema_max
    elif method == "n_std":
        lo, hi = stats.mean - calib.n_std * stats.std, stats.mean + calib.n_std * stats.std
    elif method == "percentile":
        lo, hi = _percentile_range(stats, calib.percentile)
    else:
        raise NotImplementedError(f"range method '{method}' is not implemented yet")
    # Clipping never widens the observed range.
    return max(lo, stats.min), min(hi, stats.max)


def _bin_edges(stats: TensorStats) -> np.ndarray:
    return np.linspace(-stats.hist_range, stats.hist_range, stats.hist.size + 1)


def _percentile_range(stats: TensorStats, pct: float) -> tuple[float, float]:
    cdf = np.cumsum(stats.hist) / max(stats.hist.sum(), 1)
    edges = _bin_edges(stats)
    tail = (100.0 - pct) / 100.0
    lo_idx = int(np.searchsorted(cdf, tail, side="left"))
    hi_idx = int(np.searchsorted(cdf, 1.0 - tail, side="left"))
    return float(edges[lo_idx]), float(edges[min(hi_idx + 1, stats.hist.size)])
