"""Each range method against a closed form or a brute-force reference on synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qconvert.core.observer import RunningStats
from qconvert.core.plan import TensorQuant
from qconvert.core.ranges import aciq_alpha, choose_range, entropy_threshold
from qconvert.recipe.model import CalibrationConfig, QScheme


def _collect(batches: list[np.ndarray], bins: int = 4096) -> RunningStats:
    r = RunningStats("t", "", bins, 0.9)
    for b in batches:
        r.update(torch.from_numpy(b.astype(np.float32)))
    return r


def _spec(method: str, bits: int = 8, mode: str = "asym_u") -> TensorQuant:
    return TensorQuant("t", "activation", "", QScheme(bits=bits, mode=mode), method)  # type: ignore[arg-type]


def _batches(seed: int = 0, n: int = 8, size: int = 20000, dist: str = "normal") -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    if dist == "laplace":
        return [g.laplace(0.0, 1.0, size) for _ in range(n)]
    return [g.normal(0.5, 2.0, size) * (1 + 0.1 * i) for i in range(n)]


CALIB = CalibrationConfig()


def test_minmax_avg_ema_nstd_closed_form() -> None:
    bs = _batches()
    s = _collect(bs).snapshot()
    allx = np.concatenate(bs)
    assert choose_range(s, _spec("minmax"), CALIB) == pytest.approx((allx.min(), allx.max()), rel=1e-6)
    avg = (np.mean([b.min() for b in bs]), np.mean([b.max() for b in bs]))
    assert choose_range(s, _spec("avg"), CALIB) == pytest.approx(avg, rel=1e-5)
    lo = hi = None
    for b in bs:
        lo = b.min() if lo is None else 0.9 * lo + 0.1 * b.min()
        hi = b.max() if hi is None else 0.9 * hi + 0.1 * b.max()
    assert choose_range(s, _spec("ema"), CALIB) == pytest.approx((lo, hi), rel=1e-5)
    k = CALIB.n_std
    expect = (allx.mean() - k * allx.std(), allx.mean() + k * allx.std())
    assert choose_range(s, _spec("n_std"), CALIB) == pytest.approx((max(expect[0], allx.min()), min(expect[1], allx.max())), rel=1e-4)


@pytest.mark.parametrize(("bits", "laplace", "gauss"), [(2, 2.83, 1.71), (3, 3.89, 2.15), (4, 5.03, 2.55)])
def test_aciq_alpha_matches_banner_et_al_table(bits: int, laplace: float, gauss: float) -> None:
    # Banner, Nahshan, Soudry, "Post training 4-bit quantization of convolutional networks", sec. 3.
    assert aciq_alpha("laplace", 1.0, bits) == pytest.approx(laplace, abs=0.02)
    assert aciq_alpha("gauss", 1.0, bits) == pytest.approx(gauss, abs=0.02)


def test_aciq_laplace_clip_on_a_laplace_sample() -> None:
    s = _collect(_batches(dist="laplace")).snapshot()
    assert s.laplace_b == pytest.approx(1.0, rel=0.02)
    lo, hi = choose_range(s, _spec("aciq_laplace", bits=4), CALIB)
    assert hi == pytest.approx(5.03 + s.mean, rel=0.03)
    assert lo == pytest.approx(-5.03 + s.mean, rel=0.03)


def test_percentile_matches_numpy_within_a_bin() -> None:
    bs = _batches()
    s = _collect(bs).snapshot()
    allx = np.concatenate(bs)
    cfg = CalibrationConfig(percentile=99.9)
    lo, hi = choose_range(s, _spec("percentile"), cfg)
    bin_width = 2 * s.hist_range / s.hist.size
    assert lo == pytest.approx(np.percentile(allx, 0.1), abs=bin_width)
    assert hi == pytest.approx(np.percentile(allx, 99.9), abs=bin_width)


def _kl_reference(hist: np.ndarray, levels: int) -> int:
    """Exhaustive KL search written plainly, bin by bin, as TensorRT describes it."""
    best_i, best = None, math.inf
    for i in range(levels, hist.size + 1):
        p = [float(v) for v in hist[:i]]
        p[-1] += float(hist[i:].sum())
        q = [0.0] * i
        for g in range(levels):
            a, b = int(g * i / levels), int((g + 1) * i / levels)
            members = [j for j in range(a, b) if hist[j] > 0]
            total = sum(float(hist[j]) for j in range(a, b))
            for j in members:
                q[j] = total / len(members)
        ps, qs = sum(p), sum(q)
        kl = 0.0
        for pj, qj in zip(p, q):
            if pj > 0:
                if qj == 0:
                    kl = math.inf
                    break
                kl += (pj / ps) * math.log((pj / ps) / (qj / qs))
        if kl < best:
            best, best_i = kl, i
    assert best_i is not None
    return best_i


@pytest.mark.parametrize("seed", [0, 1])
def test_entropy_threshold_equals_exhaustive_kl_search(seed: int) -> None:
    g = np.random.default_rng(seed)
    x = np.abs(np.concatenate([g.normal(0, 1, 50000), g.normal(0, 6, 200)]))
    hist, _ = np.histogram(x, bins=256, range=(0, x.max()))
    assert entropy_threshold(hist.astype(np.float64), 16) == _kl_reference(hist, 16)


def test_entropy_clips_outliers_symmetrically() -> None:
    g = np.random.default_rng(0)
    bs = [np.concatenate([g.normal(0, 1, 20000), [40.0, -35.0]]) for _ in range(4)]
    lo, hi = choose_range(_collect(bs).snapshot(), _spec("entropy", mode="sym"), CALIB)
    assert lo == -hi and 2.0 < hi < 20.0


def _raw_mse(x: np.ndarray, lo: float, hi: float, bits: int) -> float:
    scale = (hi - lo) / (2**bits - 1)
    q = np.clip(np.round((x - lo) / scale), 0, 2**bits - 1) * scale + lo
    return float(np.mean((x - q) ** 2))


@pytest.mark.parametrize("bits", [4, 8])
def test_mse_clip_is_as_good_as_a_grid_search_on_raw_data(bits: int) -> None:
    bs = _batches(dist="laplace")
    allx = np.concatenate(bs)
    lo, hi = choose_range(_collect(bs).snapshot(), _spec("mse", bits=bits), CALIB)
    grid = [_raw_mse(allx, allx.min() * f, allx.max() * f, bits) for f in np.linspace(0.02, 1.0, 400)]
    assert _raw_mse(allx, lo, hi, bits) <= min(grid) * 1.03
    assert _raw_mse(allx, lo, hi, bits) < _raw_mse(allx, allx.min(), allx.max(), bits)


def test_one_sided_tensor_spends_no_codes_on_negatives() -> None:
    g = np.random.default_rng(0)
    bs = [np.maximum(g.normal(0, 1, 20000), 0) for _ in range(4)]
    s = _collect(bs).snapshot()
    for method in ("percentile", "entropy", "mse", "aciq_gauss", "aciq_laplace", "minmax"):
        lo, hi = choose_range(s, _spec(method), CALIB)
        assert lo == 0.0 and 0 < hi <= s.max, method


def test_fixed_and_clamped_ranges() -> None:
    s = _collect(_batches()).snapshot()
    relu6 = TensorQuant("t", "activation", "", QScheme(), "minmax", fixed_range=(0.0, 6.0))
    assert choose_range(s, relu6, CALIB) == (0.0, 6.0)
    tanh_in = TensorQuant("t", "activation", "", QScheme(), "minmax", clamp=(-4.0, 4.0))
    assert choose_range(s, tanh_in, CALIB) == (-4.0, 4.0)
