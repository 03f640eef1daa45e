"""Per-window feature extraction: lead selection, QRS detection, quality verdict, RR vector."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.errors import FeatureError
from features.filters import bandpass
from features.qrs import detect_qrs
from features.quality import QualityReport, beat_checks, combine, signal_checks
from features.rr import rr_features

__all__ = ["MIN_FS_HZ", "MIN_WINDOW_S", "WindowFeatures", "extract"]

MIN_FS_HZ = 100.0
MIN_WINDOW_S = 2.0


@dataclass(frozen=True, slots=True)
class WindowFeatures:
    """Everything the models need from one window.

    Attributes
    ----------
    quality : QualityReport
        Verdict on the lead used for QRS detection.
    r_peaks : numpy.ndarray
        R-peak sample indices (int64) into the window.
    rr_s : numpy.ndarray
        RR intervals in seconds (float64), ``len(r_peaks) - 1`` of them.
    heart_rate_bpm : float or None
        60 / median RR in beats per minute; None unless ``quality.ok``.
    rr_vector : numpy.ndarray
        :func:`features.rr_features` of ``rr_s``: float32, shape ``(len(RR_FEATURE_NAMES),)``,
        always finite (also when the quality is bad).
    """

    quality: QualityReport
    r_peaks: np.ndarray
    rr_s: np.ndarray
    heart_rate_bpm: float | None
    rr_vector: np.ndarray


def extract(signal_mv: np.ndarray, fs_hz: float) -> WindowFeatures:
    """Extract QRS positions, quality and RR features from one multi-lead window.

    Each lead is band-passed (0.5-40 Hz) and graded; QRS detection runs on the lead with the highest
    signal-quality index among those passing the beat-independent checks. When that lead fails the
    beat-level checks, the other passing leads are tried in order of quality.

    Parameters
    ----------
    signal_mv : numpy.ndarray
        Window in millivolts, shape ``(n_leads, n_samples)``, float32 (other real dtypes are
        converted); at least 2 s long.
    fs_hz : float
        Sample rate in Hz, at least 100.

    Returns
    -------
    WindowFeatures

    Raises
    ------
    FeatureError
        On a shape other than ``(n_leads >= 1, n_samples)``, a window shorter than 2 s, a sample rate
        below 100 Hz or non-finite samples.
    """
    x = np.asarray(signal_mv)
    if x.ndim != 2 or x.shape[0] < 1:
        raise FeatureError(f"signal must have shape (n_leads, n_samples), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise FeatureError(f"signal must be real-valued, got dtype {x.dtype}")
    fs = float(fs_hz)
    if not np.isfinite(fs) or fs < MIN_FS_HZ:
        raise FeatureError(f"sample rate must be at least {MIN_FS_HZ:g} Hz, got {fs_hz!r}")
    if x.shape[1] < MIN_WINDOW_S * fs:
        raise FeatureError(f"window of {x.shape[1]} samples at {fs:g} Hz is shorter than {MIN_WINDOW_S:g} s")
    raw = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(raw)):
        raise FeatureError("signal holds non-finite samples")

    filtered = bandpass(raw, fs)
    checks = [signal_checks(raw[i], filtered[i], fs) for i in range(raw.shape[0])]
    order = sorted(range(len(checks)), key=lambda i: (checks[i].reason is not None, -checks[i].sqi, i))
    best = order[0]
    best_peaks = detect_qrs(filtered[best], fs)
    if checks[best].reason is not None:
        return _assemble(combine(checks[best], None), best_peaks, fs)
    best_report = combine(checks[best], beat_checks(best_peaks, filtered[best], fs))
    if best_report.ok:
        return _assemble(best_report, best_peaks, fs)
    for lead in order[1:]:
        if checks[lead].reason is not None:
            break
        peaks = detect_qrs(filtered[lead], fs)
        report = combine(checks[lead], beat_checks(peaks, filtered[lead], fs))
        if report.ok:
            return _assemble(report, peaks, fs)
    return _assemble(best_report, best_peaks, fs)


def _assemble(quality: QualityReport, peaks: np.ndarray, fs: float) -> WindowFeatures:
    rr_s = np.diff(peaks) / fs
    heart_rate = 60.0 / float(np.median(rr_s)) if quality.ok else None
    return WindowFeatures(
        quality=quality,
        r_peaks=peaks,
        rr_s=rr_s,
        heart_rate_bpm=heart_rate,
        rr_vector=rr_features(rr_s),
    )
