from __future__ import annotations

import math

import numpy as np
import pytest

from features import RR_FEATURE_NAMES, FeatureError, rr_features
from features.rr import sample_entropy


def _named(rr_s: list[float]) -> dict[str, float]:
    vector = rr_features(np.asarray(rr_s))
    assert vector.dtype == np.float32
    assert vector.shape == (len(RR_FEATURE_NAMES),)
    assert np.all(np.isfinite(vector))
    return dict(zip(RR_FEATURE_NAMES, vector.tolist(), strict=True))


def test_names_are_unique() -> None:
    assert len(set(RR_FEATURE_NAMES)) == len(RR_FEATURE_NAMES)


def test_constant_rhythm() -> None:
    f = _named([0.8] * 10)
    assert f["n_rr"] == 10
    assert f["mean_rr_s"] == pytest.approx(0.8)
    assert f["median_rr_s"] == pytest.approx(0.8)
    assert f["mean_hr_bpm"] == pytest.approx(75.0)
    for name in ("sdnn_s", "cv_rr", "rmssd_s", "pnn20", "pnn50", "madsd_norm", "rr_range_norm", "tpr"):
        assert f[name] == pytest.approx(0.0, abs=1e-7), name
    assert f["sampen"] == pytest.approx(0.0, abs=1e-7)
    assert f["cosen"] == pytest.approx(math.log(0.06) - math.log(0.8), abs=1e-6)
    assert f["drr_hist_entropy_bits"] == pytest.approx(0.0, abs=1e-7)
    assert f["frac_rr_near_median"] == pytest.approx(1.0)
    assert f["drr_lag1_corr"] == 0.0
    assert f["lorenz_scatter"] == 0.0


def test_alternating_rhythm() -> None:
    rr = [0.8, 1.0] * 5
    f = _named(rr)
    assert f["mean_rr_s"] == pytest.approx(0.9)
    assert f["sdnn_s"] == pytest.approx(0.1)
    assert f["cv_rr"] == pytest.approx(0.1 / 0.9)
    assert f["rmssd_s"] == pytest.approx(0.2)
    assert f["rmssd_norm"] == pytest.approx(0.2 / 0.9)
    assert f["pnn50"] == pytest.approx(1.0)
    assert f["frac_drr_gt_10pct"] == pytest.approx(1.0)
    assert f["madsd_norm"] == pytest.approx(0.2 / 0.9)
    assert f["rr_range_norm"] == pytest.approx(0.2 / 0.9)
    assert f["tpr"] == pytest.approx(8 / (2 * 8 / 3))
    assert f["sd1_norm"] == pytest.approx(float(np.std(np.diff(rr))) / math.sqrt(2) / 0.9)
    assert f["sd2_norm"] == pytest.approx(0.0, abs=1e-7)
    assert f["sd1_sd2_ratio"] == pytest.approx(10.0)
    assert f["sampen"] == pytest.approx(0.0, abs=1e-7)
    assert f["drr_hist_entropy_bits"] == pytest.approx(-(5 / 9 * math.log2(5 / 9) + 4 / 9 * math.log2(4 / 9)))
    assert f["frac_rr_near_median"] == 0.0
    assert f["drr_lag1_corr"] == pytest.approx(-1.0)
    assert f["lorenz_scatter"] == pytest.approx(2 / 8)


def test_isolated_premature_beat() -> None:
    rr = [1.0, 1.0, 1.0, 0.6, 1.4, 1.0, 1.0, 1.0]
    f = _named(rr)
    assert f["frac_rr_near_median"] == pytest.approx(6 / 8)
    # (dRR_i, dRR_i+1) points off the origin: (0, -0.4), (-0.4, 0.8), (0.8, -0.4), (-0.4, 0): four cells.
    assert f["lorenz_scatter"] == pytest.approx(4 / 6)
    assert f["pnn50"] == pytest.approx(3 / 7)


def test_sample_entropy_by_hand() -> None:
    x = np.array([1.0, 2.0, 1.0, 3.0, 1.0])
    # m=1, r=0.5, 4 templates [1, 2, 1, 3]: B = 1 pair (0, 2); A: x[1]=2 vs x[3]=3 do not match.
    assert sample_entropy(x, m=1, r=0.5) == pytest.approx(math.log(4 * 3 / 2))
    y = np.array([1.0, 2.0, 1.0, 2.0, 1.0, 3.0])
    # 5 templates [1, 2, 1, 2, 1]: B = 4 pairs; A: (0, 2), (1, 3) continue, (0, 4), (2, 4) do not.
    assert sample_entropy(y, m=1, r=0.5) == pytest.approx(-math.log(2 / 4))


@pytest.mark.parametrize("n", [0, 1, 2])
def test_short_series_are_finite(n: int) -> None:
    f = _named([0.7] * n)
    assert f["n_rr"] == n
    assert f["sampen"] == 0.0
    assert f["tpr"] == 0.0


@pytest.mark.parametrize("bad", [np.array([0.8, -0.1]), np.array([0.8, np.nan]), np.ones((2, 2))])
def test_invalid_intervals_raise(bad: np.ndarray) -> None:
    with pytest.raises(FeatureError):
        rr_features(bad)
