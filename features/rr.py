"""RR-interval and heart-rate-variability features tuned for atrial-fibrillation screening."""

from __future__ import annotations

import math

import numpy as np

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
    if rr.size and (not np.all(np.isfinite(rr)) or rr.min() <= 0.0):
        raise FeatureError("rr_s must hold finite, positive intervals in seconds")
    out = np.zeros(len(RR_FEATURE_NAMES), dtype=np.float64)
    n = rr.size
    out[_INDEX["n_rr"]] = n
    if n == 0:
        return out.astype(np.float32)

    mean = float(rr.mean())
    median = float(np.median(rr))
    sdnn = float(rr.std())
    out[_INDEX["mean_rr_s"]] = mean
    out[_INDEX["median_rr_s"]] = median
    out[_INDEX["mean_hr_bpm"]] = 60.0 / mean
    out[_INDEX["sdnn_s"]] = sdnn
    out[_INDEX["cv_rr"]] = sdnn / mean
    out[_INDEX["rr_range_norm"]] = float(rr.max() - rr.min()) / median
    out[_INDEX["frac_rr_near_median"]] = float(np.mean(np.abs(rr - median) <= 0.1 * median))
    if n < 2:
        return out.astype(np.float32)

    drr = np.diff(rr)
    abs_drr = np.abs(drr)
    rmssd = math.sqrt(float(np.mean(drr * drr)))
    out[_INDEX["rmssd_s"]] = rmssd
    out[_INDEX["rmssd_norm"]] = rmssd / mean
    out[_INDEX["pnn20"]] = float(np.mean(abs_drr > 0.020))
    out[_INDEX["pnn50"]] = float(np.mean(abs_drr > 0.050))
    out[_INDEX["frac_drr_gt_10pct"]] = float(np.mean(abs_drr > 0.1 * rr[:-1]))
    out[_INDEX["madsd_norm"]] = float(np.median(abs_drr)) / median

    sd1 = float(np.std(drr)) / math.sqrt(2.0)
    sd2 = float(np.std(rr[1:] + rr[:-1])) / math.sqrt(2.0)
    out[_INDEX["sd1_norm"]] = sd1 / mean
    out[_INDEX["sd2_norm"]] = sd2 / mean
    out[_INDEX["sd1_sd2_ratio"]] = min(sd1 / max(sd2, _POINCARE_FLOOR_S), _SD_RATIO_CAP) if sd1 > 0.0 else 0.0

    counts, _ = np.histogram(np.clip(drr, _HIST_EDGES_S[0], _HIST_EDGES_S[-1]), bins=_HIST_EDGES_S)
    p = counts[counts > 0] / drr.size
    out[_INDEX["drr_hist_entropy_bits"]] = float(-(p * np.log2(p)).sum())
    if n < 3:
        return out.astype(np.float32)

    turning = (drr[1:] * drr[:-1]) < 0.0
    a, b = drr[:-1], drr[1:]
    a_c, b_c = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.dot(a_c, a_c)) * float(np.dot(b_c, b_c)))
    out[_INDEX["drr_lag1_corr"]] = float(np.dot(a_c, b_c)) / denom if denom > 1e-12 else 0.0
    cells = np.round(np.stack([a, b]) / _LORENZ_CELL_S).astype(np.int64)
    off_origin = cells[:, np.any(cells != 0, axis=0)]
    if off_origin.size:
        occupied = np.unique(off_origin[0] * 100_003 + off_origin[1]).size
        out[_INDEX["lorenz_scatter"]] = occupied / a.size
    out[_INDEX["tpr"]] = float(turning.sum()) / (2.0 * (n - 2) / 3.0)
    sampen = sample_entropy(rr, SAMPEN_M, SAMPEN_R_S)
    out[_INDEX["sampen"]] = sampen
    out[_INDEX["cosen"]] = sampen + math.log(2.0 * SAMPEN_R_S) - math.log(mean)
    return out.astype(np.float32)


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
    idx = np.arange(n_templates)[:, None] + np.arange(m + 1)[None, :]
    templates = x[idx]
    close = np.abs(templates[:, None, :] - templates[None, :, :]) <= r
    upper = np.triu(np.ones((n_templates, n_templates), dtype=bool), k=1)
    match_m = np.all(close[:, :, :m], axis=2) & upper
    b = int(match_m.sum())
    a = int((match_m & close[:, :, m]).sum())
    if a == 0 or b == 0:
        return math.log(n_templates * (n_templates - 1) / 2.0)
    return -math.log(a / b)
