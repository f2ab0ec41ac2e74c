from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qconvert.core.observer import RunningStats
from qconvert.core.stats import StatsSet, grow_histogram
from qconvert.errors import StatsError


def _stats(chunks: list[torch.Tensor], bins: int = 256) -> RunningStats:
    r = RunningStats("t", "m", bins, 0.9)
    for c in chunks:
        r.update(c)
    return r


def test_grow_histogram_keeps_counts_in_place() -> None:
    # Values on [-1, 1] binned with 8 bins; regrown to [-2, 2] must match direct binning.
    x = np.random.default_rng(0).uniform(-1, 1, 1000)
    h1, _ = np.histogram(x, bins=8, range=(-1, 1))
    h2, _ = np.histogram(x, bins=8, range=(-2, 2))
    np.testing.assert_array_equal(grow_histogram(h1, 1.0, 2.0), h2)


def test_two_shards_merge_into_exactly_the_whole() -> None:
    g = torch.Generator().manual_seed(0)
    a = [torch.randn(64, generator=g) * 0.3 for _ in range(3)]
    b = [torch.randn(64, generator=g) * 5.0 for _ in range(2)]
    whole = _stats(a + b).snapshot()
    merged = StatsSet("f", {"t": _stats(a).snapshot()}).merged(StatsSet("f", {"t": _stats(b).snapshot()})).tensors["t"]
    assert (merged.min, merged.max, merged.count, merged.batches) == (whole.min, whole.max, whole.count, whole.batches)
    assert merged.hist_range == whole.hist_range
    np.testing.assert_array_equal(merged.hist, whole.hist)
    assert merged.mean == pytest.approx(whole.mean)
    assert merged.std == pytest.approx(whole.std)


def test_stats_roundtrip_and_summary(tmp_path: Path) -> None:
    x = torch.linspace(-3, 5, 1001)
    s = StatsSet("abc", {"t": _stats([x]).snapshot()})
    s.save(tmp_path)
    loaded = StatsSet.load(tmp_path)
    t = loaded.tensors["t"]
    assert (t.min, t.max) == (-3.0, 5.0)
    assert t.mean == pytest.approx(1.0, abs=1e-5)
    assert t.std == pytest.approx(float(x.std(unbiased=False)), rel=1e-5)
    np.testing.assert_array_equal(t.hist, s.tensors["t"].hist)
    assert t.hist.sum() == 1001


def test_not_a_stats_dir(tmp_path: Path) -> None:
    with pytest.raises(StatsError, match="not a stats directory"):
        StatsSet.load(tmp_path)
