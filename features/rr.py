"""RR-interval and heart-rate-variability features tuned for atrial-fibrillation screening."""

from __future__ import annotations

import math

import numpy as np

from features import _stats
from features.errors import FeatureError

__all__ = ["RR_FEATURE_NAMES", "SAMPEN_M", "SAMPEN_R_S", "rr_features", "sample_entropy"]

RR_FEATURE_NAMES: tuple[str, ...] = (
    "n_rr",
    "mean_rr_s",
    "median_rr_s",
    "mean_hr_bpm",
    "sdnn_s",
    "cv_rr",
    "rmssd_s",
    "rmssd_norm",
    "pnn20",
    "pnn50",
    "frac_drr_gt_10pct",
    "madsd_norm",
    "rr_range_norm",
    "sampen",
    "cosen",
    "tpr",
    "sd1_norm",
    "sd2_norm",
    "sd1_sd2_ratio",
    "drr_hist_entropy_bits",
    "frac_rr_near_median",
    "drr_lag1_corr",
    "lorenz_scatter",
)
"""Names of the entries of :func:`rr_features`, in order (dRR: successive RR differences).

- ``n_rr``: number of RR intervals.
- ``mean_rr_s``, ``median_rr_s``: in s; ``mean_hr_bpm`` = 60 / mean RR.
- ``sdnn_s``: population SD of RR in s; ``cv_rr`` = SDNN / mean RR.
- ``rmssd_s``: RMS of dRR in s; ``rmssd_norm`` = RMSSD / mean RR.
- ``pnn20``, ``pnn50``: fraction of |dRR| above 20 ms / 50 ms.
- ``frac_drr_gt_10pct``: fraction of |dRR| above 10 % of the preceding RR.
- ``madsd_norm`` = median |dRR| / median RR; ``rr_range_norm`` = (max RR - min RR) / median RR.
- ``sampen``: sample entropy (m = 1, r = 30 ms); ``cosen`` = sampen + ln(2 r) - ln(mean RR), both in s.
- ``tpr``: turning points over their expectation 2 (n - 2) / 3 for a random series.
- ``sd1_norm``, ``sd2_norm``: Poincare SD1, SD2 over mean RR; ``sd1_sd2_ratio`` = SD1 / max(SD2, 1 ms), at most 10.
- ``drr_hist_entropy_bits``: Shannon entropy in bits of dRR in 40 ms bins over +/-1 s.
- ``frac_rr_near_median``: fraction of RR within 10 % of the median RR (a regular backbone with ectopics
  keeps most beats there; AF does not).
- ``drr_lag1_corr``: correlation of successive dRR (about -0.5 for independent RR, -1 for bigeminy).
- ``lorenz_scatter``: distinct non-origin 40 ms cells occupied by the (dRR_i, dRR_i+1) points, over the
  number of points (AF scatters, ectopy repeats a few patterns, sinus rhythm stays at the origin).
"""

SAMPEN_M = 1
SAMPEN_R_S = 0.030
_HIST_EDGES_S = np.linspace(-1.0, 1.0, 51)
_POINCARE_FLOOR_S = 1e-3
_LORENZ_CELL_S = 0.040
_SD_RATIO_CAP = 10.0
_INDEX = {name: i for i, name in enumerate(RR_FEATURE_NAMES)}
_N_RR = _INDEX["n_rr"]
_MEAN_RR = _INDEX["mean_rr_s"]
_MEDIAN_RR = _INDEX["median_rr_s"]
_MEAN_HR = _INDEX["mean_hr_bpm"]
_SDNN = _INDEX["sdnn_s"]
_CV_RR = _INDEX["cv_rr"]
_RMSSD = _INDEX["rmssd_s"]
_RMSSD_NORM = _INDEX["rmssd_norm"]
_PNN20 = _INDEX["pnn20"]
_PNN50 = _INDEX["pnn50"]
_DRR_GT_10PCT = _INDEX["frac_drr_gt_10pct"]
_MADSD = _INDEX["madsd_norm"]
_RR_RANGE = _INDEX["rr_range_norm"]
_SAMPEN = _INDEX["sampen"]
_COSEN = _INDEX["cosen"]
_TPR = _INDEX["tpr"]
_SD1 = _INDEX["sd1_norm"]
_SD2 = _INDEX["sd2_norm"]
_SD_RATIO = _INDEX["sd1_sd2_ratio"]
_DRR_ENTROPY = _INDEX["drr_hist_entropy_bits"]
_NEAR_MEDIAN = _INDEX["frac_rr_near_median"]
_DRR_LAG1 = _INDEX["drr_lag1_corr"]
_LORENZ = _INDEX["lorenz_scatter"]


def rr_features(rr_s: np.ndarray) -> np.ndarray:
    """Fixed-length RR/HRV feature vector of one window.

    Parameters
    ----------
    rr_s : numpy.ndarray
        RR intervals in seconds, shape ``(n_rr,)``, finite and positive; may be empty.

    Returns
    -------
    numpy.ndarray
        float32 vector of shape ``(len(RR_FEATURE_NAMES),)``. Features that are undefined for the
        given number of intervals (for instance dispersion with fewer than 2 intervals, successive
        differences with fewer than 2, turning points or entropy with fewer than 3) are 0, so the
        vector is always finite. When no template of length m + 1 matches, ``sampen`` takes its largest
        observable value, ln of the number of template pairs.

    Raises
    ------
    FeatureError
        If ``rr_s`` is not one-dimensional or holds non-finite or non-positive values.
    """
    rr = np.asarray(rr_s, dtype=np.float64)
    if rr.ndim != 1:
        raise FeatureError(f"rr_s must be one-dimensional, got shape {rr.shape}")
    if rr.size and (not np.isfinite(rr).all() or rr.min() <= 0.0):
        raise FeatureError("rr_s must hold finite, positive intervals in seconds")
    # numpy's mean/median/std/histogram/unique are replaced by their arithmetic (features._stats, counts
    # of booleans, a bin search): the same numbers to the last bit, without numpy's per-call overhead,
    # which was most of this function's time on a 10-s window.
    out = [0.0] * len(RR_FEATURE_NAMES)
    n = rr.size
    out[_N_RR] = n
    if n == 0:
        return np.array(out).astype(np.float32)

    mean = _stats.mean(rr)
    median = _stats.median(rr)
    sdnn = _stats.std(rr)
    out[_MEAN_RR] = mean
    out[_MEDIAN_RR] = median
    out[_MEAN_HR] = 60.0 / mean
    out[_SDNN] = sdnn
    out[_CV_RR] = sdnn / mean
    out[_RR_RANGE] = float(rr.max() - rr.min()) / median
    out[_NEAR_MEDIAN] = np.count_nonzero(np.abs(rr - median) <= 0.1 * median) / n
    if n < 2:
        return np.array(out).astype(np.float32)

    drr = rr[1:] - rr[:-1]
    abs_drr = np.abs(drr)
    n_drr = n - 1
    rmssd = math.sqrt(_stats.mean(drr * drr))
    out[_RMSSD] = rmssd
    out[_RMSSD_NORM] = rmssd / mean
    out[_PNN20] = np.count_nonzero(abs_drr > 0.020) / n_drr
    out[_PNN50] = np.count_nonzero(abs_drr > 0.050) / n_drr
    out[_DRR_GT_10PCT] = np.count_nonzero(abs_drr > 0.1 * rr[:-1]) / n_drr
    out[_MADSD] = _stats.median(abs_drr) / median

    sd1 = _stats.std(drr) / math.sqrt(2.0)
    sd2 = _stats.std(rr[1:] + rr[:-1]) / math.sqrt(2.0)
    out[_SD1] = sd1 / mean
    out[_SD2] = sd2 / mean
    out[_SD_RATIO] = min(sd1 / max(sd2, _POINCARE_FLOOR_S), _SD_RATIO_CAP) if sd1 > 0.0 else 0.0

    # numpy.histogram(np.clip(drr, -1, 1), bins=_HIST_EDGES_S): bin i holds edge[i] <= v < edge[i + 1],
    # the last bin also v == edge[-1].
    clipped = np.minimum(np.maximum(drr, _HIST_EDGES_S[0]), _HIST_EDGES_S[-1])
    bins = np.minimum(np.searchsorted(_HIST_EDGES_S, clipped, side="right") - 1, _HIST_EDGES_S.size - 2)
    counts = np.bincount(bins, minlength=_HIST_EDGES_S.size - 1)
    p = counts[counts > 0] / n_drr
    out[_DRR_ENTROPY] = float(-(p * np.log2(p)).sum())
    if n < 3:
        return np.array(out).astype(np.float32)

    a, b = drr[:-1], drr[1:]
    turning = np.count_nonzero((b * a) < 0.0)
    a_c, b_c = a - _stats.mean(a), b - _stats.mean(b)
    denom = math.sqrt(float(np.dot(a_c, a_c)) * float(np.dot(b_c, b_c)))
    out[_DRR_LAG1] = float(np.dot(a_c, b_c)) / denom if denom > 1e-12 else 0.0
    cells = np.rint(drr / _LORENZ_CELL_S).astype(np.int64)  # numpy.round: half to even
    cell_a, cell_b = cells[:-1], cells[1:]
    off_origin = (cell_a != 0) | (cell_b != 0)
    if off_origin.any():
        keys = np.sort(cell_a[off_origin] * 100_003 + cell_b[off_origin])
        occupied = 1 + np.count_nonzero(keys[1:] != keys[:-1])  # numpy.unique(keys).size
        out[_LORENZ] = occupied / a.size
    out[_TPR] = turning / (2.0 * (n - 2) / 3.0)
    sampen = sample_entropy(rr, SAMPEN_M, SAMPEN_R_S)
    out[_SAMPEN] = sampen
    out[_COSEN] = sampen + math.log(2.0 * SAMPEN_R_S) - math.log(mean)
    return np.array(out).astype(np.float32)


def sample_entropy(x: np.ndarray, m: int = SAMPEN_M, r: float = SAMPEN_R_S) -> float:
    """Sample entropy of a short series (Richman and Moorman), Chebyshev distance ``<= r``.

    Parameters
    ----------
    x : numpy.ndarray
        Series, shape ``(n,)``, in the units of ``r`` (seconds for RR intervals).
    m : int
        Template length.
    r : float
        Tolerance, in the units of ``x``.

    Returns
    -------
    float
        ``-ln(A / B)`` over the first ``n - m`` templates; ln of the number of template pairs when
        ``A`` is 0 (no match of length ``m + 1``), and 0 when there are fewer than two templates.
    """
    n_templates = x.size - m
    if n_templates < 2:
        return 0.0
    # Templates i and j match on element k when |x[i + k] - x[j + k]| <= r: one table of all sample pairs
    # serves every k. Matching is symmetric, so the pairs i < j are half of the off-diagonal matches.
    close = np.abs(x[:, None] - x[None, :]) <= r
    match_m = np.ones((n_templates, n_templates), dtype=bool)
    for k in range(m):
        match_m &= close[k : k + n_templates, k : k + n_templates]
    match = match_m & close[m : m + n_templates, m : m + n_templates]
    b = (np.count_nonzero(match_m) - np.count_nonzero(match_m.diagonal())) // 2
    a = (np.count_nonzero(match) - np.count_nonzero(match.diagonal())) // 2
    if a == 0 or b == 0:
        return math.log(n_templates * (n_templates - 1) / 2.0)
    return -math.log(a / b)
