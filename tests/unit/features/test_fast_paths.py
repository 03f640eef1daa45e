"""The hot path's replacements for numpy routines give numpy's results to the last bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal as sps

from features import _stats
from features.filters import bandpass, bandpass_sos
from features.rr import RR_FEATURE_NAMES, rr_features, sample_entropy


def _same_float(a: float, b: float) -> bool:
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _samples(rng: np.random.Generator, n: int, kind: int) -> np.ndarray:
    if kind == 0:
        return rng.standard_normal(n)
    if kind == 1:
        return rng.choice(np.array([-0.0, 0.0, 1.0, -1.0, 0.5]), n)  # ties and signed zeros
    return np.round(rng.uniform(0.3, 1.5, n) * 250) / 250  # quantised like RR intervals


def test_stats_equal_numpy() -> None:
    rng = np.random.default_rng(0)
    for trial in range(3000):
        a = _samples(rng, int(rng.integers(1, 40)), trial % 3)
        assert _same_float(_stats.median(a), float(np.median(a)))
        assert _same_float(_stats.mean(a), float(np.mean(a)))
        assert _same_float(_stats.std(a), float(np.std(a)))
        rows = np.stack((a, a[::-1], -a))
        for got, want in (
            (_stats.median_rows(rows), np.median(rows, axis=1, keepdims=True)),
            (_stats.mean_rows(rows), np.mean(rows, axis=1, keepdims=True)),
        ):
            assert got.shape == want.shape and got.tobytes() == want.tobytes()
        ints = rng.integers(0, 600, a.size)
        assert _same_float(_stats.median(ints), float(np.median(ints)))


def _reference_rr_features(rr: np.ndarray) -> np.ndarray:
    """rr_features written with numpy's mean/median/std/histogram/unique (its form before the fast path)."""
    index = {name: i for i, name in enumerate(RR_FEATURE_NAMES)}
    out = np.zeros(len(RR_FEATURE_NAMES))
    n = rr.size
    out[index["n_rr"]] = n
    if n == 0:
        return out.astype(np.float32)
    mean, median, sdnn = float(rr.mean()), float(np.median(rr)), float(rr.std())
    out[index["mean_rr_s"]], out[index["median_rr_s"]], out[index["mean_hr_bpm"]] = mean, median, 60.0 / mean
    out[index["sdnn_s"]], out[index["cv_rr"]] = sdnn, sdnn / mean
    out[index["rr_range_norm"]] = float(rr.max() - rr.min()) / median
    out[index["frac_rr_near_median"]] = float(np.mean(np.abs(rr - median) <= 0.1 * median))
    if n < 2:
        return out.astype(np.float32)
    drr = np.diff(rr)
    abs_drr = np.abs(drr)
    rmssd = math.sqrt(float(np.mean(drr * drr)))
    out[index["rmssd_s"]], out[index["rmssd_norm"]] = rmssd, rmssd / mean
    out[index["pnn20"]] = float(np.mean(abs_drr > 0.020))
    out[index["pnn50"]] = float(np.mean(abs_drr > 0.050))
    out[index["frac_drr_gt_10pct"]] = float(np.mean(abs_drr > 0.1 * rr[:-1]))
    out[index["madsd_norm"]] = float(np.median(abs_drr)) / median
    sd1 = float(np.std(drr)) / math.sqrt(2.0)
    sd2 = float(np.std(rr[1:] + rr[:-1])) / math.sqrt(2.0)
    out[index["sd1_norm"]], out[index["sd2_norm"]] = sd1 / mean, sd2 / mean
    out[index["sd1_sd2_ratio"]] = min(sd1 / max(sd2, 1e-3), 10.0) if sd1 > 0.0 else 0.0
    edges = np.linspace(-1.0, 1.0, 51)
    counts, _ = np.histogram(np.clip(drr, edges[0], edges[-1]), bins=edges)
    p = counts[counts > 0] / drr.size
    out[index["drr_hist_entropy_bits"]] = float(-(p * np.log2(p)).sum())
    if n < 3:
        return out.astype(np.float32)
    a, b = drr[:-1], drr[1:]
    a_c, b_c = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.dot(a_c, a_c)) * float(np.dot(b_c, b_c)))
    out[index["drr_lag1_corr"]] = float(np.dot(a_c, b_c)) / denom if denom > 1e-12 else 0.0
    cells = np.round(np.stack([a, b]) / 0.040).astype(np.int64)
    off_origin = cells[:, np.any(cells != 0, axis=0)]
    if off_origin.size:
        out[index["lorenz_scatter"]] = np.unique(off_origin[0] * 100_003 + off_origin[1]).size / a.size
    out[index["tpr"]] = float(((drr[1:] * drr[:-1]) < 0.0).sum()) / (2.0 * (n - 2) / 3.0)
    sampen = _reference_sample_entropy(rr, 1, 0.030)
    out[index["sampen"]] = sampen
    out[index["cosen"]] = sampen + math.log(2.0 * 0.030) - math.log(mean)
    return out.astype(np.float32)


def _reference_sample_entropy(x: np.ndarray, m: int, r: float) -> float:
    n_templates = x.size - m
    if n_templates < 2:
        return 0.0
    templates = x[np.arange(n_templates)[:, None] + np.arange(m + 1)[None, :]]
    close = np.abs(templates[:, None, :] - templates[None, :, :]) <= r
    match_m = np.all(close[:, :, :m], axis=2) & np.triu(np.ones((n_templates, n_templates), dtype=bool), k=1)
    b = int(match_m.sum())
    a = int((match_m & close[:, :, m]).sum())
    if a == 0 or b == 0:
        return math.log(n_templates * (n_templates - 1) / 2.0)
    return -math.log(a / b)


def test_rr_features_equal_the_numpy_formulation() -> None:
    rng = np.random.default_rng(1)
    for trial in range(1500):
        n = int(rng.integers(0, 40))
        kind = trial % 4
        if kind == 0:
            rr = rng.uniform(0.3, 1.5, n)
        elif kind == 1:
            rr = np.round(rng.uniform(0.3, 1.5, n) * 250) / 250
        elif kind == 2:
            rr = np.full(n, 0.8)
        else:  # dRR on exact bin edges and half Lorenz cells
            rr = 0.8 + rng.choice(np.array([-0.06, -0.02, 0.0, 0.02, 0.04, 0.06, 1.0]), n)
        got, want = rr_features(rr), _reference_rr_features(rr)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (trial, rr)


@pytest.mark.parametrize("m", [0, 1, 2])
@pytest.mark.parametrize("r", [0.03, 0.0, -0.01])
def test_sample_entropy_equals_the_template_formulation(m: int, r: float) -> None:
    rng = np.random.default_rng(m)
    for n in range(0, 30):
        x = np.round(rng.uniform(0.5, 1.0, n) * 50) / 50
        assert sample_entropy(x, m, r) == _reference_sample_entropy(x, m, r)


@pytest.mark.parametrize("dtype", [np.float64, np.int16, np.float16, np.complex128])
def test_bandpass_equals_sosfiltfilt_for_other_dtypes(dtype: type) -> None:
    x = (np.random.default_rng(2).standard_normal((3, 700)).cumsum(axis=-1) * 50).astype(dtype)
    expected = sps.sosfiltfilt(bandpass_sos(250.0, 0.5, 40.0, 2), x, axis=-1)
    got = bandpass(x, 250.0)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
