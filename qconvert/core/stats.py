"""Per-tensor calibration statistics: immutable snapshots, merging, files.

Everything a range method needs is here, so methods can be switched on a saved
stats directory without reading data again. Histograms live on a symmetric
power-of-two grid [-R, R] so two shards always merge exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from qconvert.errors import StatsError

__all__ = ["StatsSet", "TensorStats", "grow_histogram", "merge_stats"]

STATS_FORMAT = 1


@dataclass(frozen=True)
class TensorStats:
    """What one calibration pass learned about one tensor.

    ``avg_min``/``avg_max`` are means of per-batch extremes (Distiller's "avg");
    ``laplace_b`` is the mean absolute deviation from the mean (ACIQ's estimator),
    read off the histogram.
    """

    key: str
    module: str
    min: float
    max: float
    sum_batch_min: float
    sum_batch_max: float
    ema_min: float
    ema_max: float
    batches: int
    count: int
    sum: float
    sum_sq: float
    hist_range: float
    hist: np.ndarray = field(repr=False)

    @property
    def avg_min(self) -> float:
        return self.sum_batch_min / self.batches

    @property
    def avg_max(self) -> float:
        return self.sum_batch_max / self.batches

    @property
    def mean(self) -> float:
        return self.sum / self.count

    @property
    def std(self) -> float:
        return float(np.sqrt(max(self.sum_sq / self.count - self.mean**2, 0.0)))

    @property
    def laplace_b(self) -> float:
        total = float(self.hist.sum())
        if total == 0:
            return 0.0
        centers = (np.arange(self.hist.size) + 0.5) * (2 * self.hist_range / self.hist.size) - self.hist_range
        return float(np.sum(self.hist * np.abs(centers - self.mean)) / total)

    def summary(self) -> dict[str, float | int | str]:
        """The readable part written to stats.json."""
        return {
            "module": self.module,
            "min": self.min,
            "max": self.max,
            "avg_min": self.avg_min,
            "avg_max": self.avg_max,
            "ema_min": self.ema_min,
            "ema_max": self.ema_max,
            "mean": self.mean,
            "std": self.std,
            "laplace_b": self.laplace_b,
            "count": self.count,
            "batches": self.batches,
            "hist_range": self.hist_range,
            "hist_bins": int(self.hist.size),
        }


def grow_histogram(hist: np.ndarray, hist_range: float, new_range: float) -> np.ndarray:
    """Re-bin a histogram on [-R, R] onto [-R', R'] with R' = R * 2**k, exactly."""
    bins = hist.size
    while hist_range < new_range:
        grown = np.zeros_like(hist)
        grown[bins // 4 : 3 * bins // 4] = hist.reshape(bins // 2, 2).sum(axis=1)
        hist, hist_range = grown, hist_range * 2
    return hist


def merge_stats(a: TensorStats, b: TensorStats, ema_decay: float = 0.9) -> TensorStats:
    """Statistics of the union of two shards (min/max and histograms exactly).

    The EMA is order-dependent by nature; the merge weights the shards by batches.
    """
    if a.hist.size != b.hist.size:
        raise StatsError(f"cannot merge stats of '{a.key}': histograms have {a.hist.size} and {b.hist.size} bins")
    r = max(a.hist_range, b.hist_range)
    hist = grow_histogram(a.hist, a.hist_range, r) + grow_histogram(b.hist, b.hist_range, r)
    wa, wb = a.batches / (a.batches + b.batches), b.batches / (a.batches + b.batches)
    return replace(
        a,
        min=min(a.min, b.min),
        max=max(a.max, b.max),
        sum_batch_min=a.sum_batch_min + b.sum_batch_min,
        sum_batch_max=a.sum_batch_max + b.sum_batch_max,
        ema_min=wa * a.ema_min + wb * b.ema_min,
        ema_max=wa * a.ema_max + wb * b.ema_max,
        batches=a.batches + b.batches,
        count=a.count + b.count,
        sum=a.sum + b.sum,
        sum_sq=a.sum_sq + b.sum_sq,
        hist_range=r,
        hist=hist,
    )


@dataclass(frozen=True)
class StatsSet:
    """Statistics for every observed tensor of one captured model.

    ``fingerprint`` identifies the captured graph (structure and input shape), so
    stats from another model or shape are refused instead of silently misapplied.
    """

    fingerprint: str
    tensors: dict[str, TensorStats]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": STATS_FORMAT,
            "fingerprint": self.fingerprint,
            "tensors": {k: s.summary() for k, s in sorted(self.tensors.items())},
            "raw": {k: _raw(s) for k, s in sorted(self.tensors.items())},
        }
        (directory / "stats.json").write_text(json.dumps(meta, indent=1) + "\n")
        hists: dict[str, Any] = {k: s.hist for k, s in self.tensors.items()}  # numpy's stub reads ** as its own keywords
        np.savez_compressed(directory / "histograms.npz", **hists)

    @classmethod
    def load(cls, directory: Path) -> StatsSet:
        from qconvert.io.files import check_dir, check_file, first_line

        fix = "give the directory 'qconvert calibrate --out' wrote, or re-run it"
        check_dir(directory, "stats directory", StatsError, fix)
        meta_path, hist_path = directory / "stats.json", directory / "histograms.npz"
        if not meta_path.exists() or not hist_path.exists():
            raise StatsError(f"{directory}: not a stats directory (expected stats.json and histograms.npz from 'qconvert calibrate')")
        check_file(meta_path, "stats file", StatsError, fix)
        check_file(hist_path, "histogram file", StatsError, fix)
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(hist_path) as hists:
                tensors = {
                    k: TensorStats(key=k, hist=hists[k].astype(np.int64), **raw) for k, raw in meta["raw"].items()
                }
            if meta.get("format") != STATS_FORMAT:
                raise StatsError(f"{meta_path}: stats format {meta.get('format')} is not {STATS_FORMAT}; re-run 'qconvert calibrate'")
            return cls(fingerprint=meta["fingerprint"], tensors=tensors)
        except StatsError:
            raise
        except Exception as e:  # json, zip and numpy raise many types for a damaged file
            raise StatsError(f"{directory}: corrupt stats directory ({first_line(e)}); re-run 'qconvert calibrate'") from e

    def merged(self, other: StatsSet) -> StatsSet:
        if other.fingerprint != self.fingerprint:
            raise StatsError("cannot merge statistics of different models")
        keys = self.tensors.keys() | other.tensors.keys()
        merged = {
            k: merge_stats(self.tensors[k], other.tensors[k])
            if k in self.tensors and k in other.tensors
            else self.tensors.get(k) or other.tensors[k]
            for k in keys
        }
        return StatsSet(self.fingerprint, merged)


def _raw(s: TensorStats) -> dict[str, float | int | str]:
    raw = asdict(s)
    del raw["key"], raw["hist"]
    return raw
