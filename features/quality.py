"""Signal-quality index and an explicit scorable/unscorable verdict for one ECG lead."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

import numpy as np

from features.errors import FeatureError
from features.filters import bandpass
from features.qrs import detect_qrs

__all__ = [
    "FLAT_LINE",
    "NOISE",
    "NON_PHYSIOLOGICAL_RR",
    "QUALITY_REASONS",
    "SATURATION",
    "TOO_FEW_BEATS",
    "QualityReason",
    "QualityReport",
    "assess_quality",
]

QualityReason = Literal["flat-line", "saturation", "noise", "too-few-beats", "non-physiological-rr"]
FLAT_LINE: Final = "flat-line"
SATURATION: Final = "saturation"
NOISE: Final = "noise"
TOO_FEW_BEATS: Final = "too-few-beats"
NON_PHYSIOLOGICAL_RR: Final = "non-physiological-rr"
QUALITY_REASONS: Final[tuple[QualityReason, ...]] = (
    FLAT_LINE,
    SATURATION,
    NOISE,
    TOO_FEW_BEATS,
    NON_PHYSIOLOGICAL_RR,
)

FLAT_SEGMENT_S = 2.0
FLAT_PTP_MV = 0.05
RAIL_TOLERANCE = 0.002
RAIL_RUN_S = 0.020
RAIL_FRACTION = 0.01
HF_EDGE_HZ = 40.0
BASELINE_EDGE_HZ = 0.5
HF_RATIO_MAX = 0.40
BASELINE_RATIO_MAX = 0.97
PEAK_AMPLITUDE_MAX_MV = 10.0
SQI_MIN = 0.2
QRS_HALF_WIDTH_S = 0.1
MORPHOLOGY_CORR_MIN = 0.8
MIN_HR_BPM = 25.0
RR_MIN_S = 0.2
RR_MAX_S = 3.0


@dataclass(frozen=True, slots=True)
class QualityReport:
    """Verdict on one window.

    Attributes
    ----------
    ok : bool
        True when the window can be scored.
    reason : str or None
        One of :data:`QUALITY_REASONS` when not ok, else None.
    sqi : float
        Signal-quality index in [0, 1]; 1 is clean.
    """

    ok: bool
    reason: QualityReason | None
    sqi: float


@dataclass(frozen=True, slots=True)
class SignalChecks:
    """Beat-independent quality of one lead: the index in [0, 1] and the first failing check, if any."""

    sqi: float
    reason: QualityReason | None


@dataclass(frozen=True, slots=True)
class BeatChecks:
    """Beat-level quality: QRS morphology consistency score in [0, 1] and the first failing check."""

    morphology: float
    reason: QualityReason | None


def assess_quality(signal_mv: np.ndarray, fs_hz: float, r_peaks: np.ndarray | None = None) -> QualityReport:
    """Assess whether one ECG lead can be scored.

    Checks run in order and the first failure is the reason: ``flat-line`` (band-passed
    peak-to-peak below 0.05 mV in at least half of the 2 s segments: lead off), ``saturation``
    (at least 1 % of samples in runs of >= 20 ms within 0.2 % of the signal range from its
    minimum or maximum: clipped at the rails), ``noise`` (power above 40 Hz over 40 % of the power
    above 0.5 Hz, baseline power below 0.5 Hz over 97 % of the AC power, band-passed amplitude
    above 10 mV, or an index below 0.2), ``too-few-beats`` (fewer than 25 beats per minute of
    window and at least 4), ``noise`` again when the detected complexes have no look-alikes (mean best
    correlation of a QRS with another below 0.8) and ``non-physiological-rr`` (an RR interval outside
    0.2-3.0 s).

    Parameters
    ----------
    signal_mv : numpy.ndarray
        One lead in millivolts, shape ``(n_samples,)``, raw (not band-passed).
    fs_hz : float
        Sample rate in Hz.
    r_peaks : numpy.ndarray, optional
        R-peak sample indices; detected with :func:`features.detect_qrs` when omitted.

    Returns
    -------
    QualityReport
        The verdict and the signal-quality index, the product of soft scores for high-frequency
        power, baseline power, band-passed kurtosis (QRS peakedness), amplitude and, when the beats
        were checked, QRS morphology consistency.
    """
    x = np.asarray(signal_mv, dtype=np.float64)
    if x.ndim != 1:
        raise FeatureError(f"assess_quality expects one lead of shape (n_samples,), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise FeatureError("signal holds non-finite samples")
    filtered = bandpass(x, fs_hz)
    checks = signal_checks(x, filtered, fs_hz)
    if checks.reason is not None:
        return QualityReport(ok=False, reason=checks.reason, sqi=checks.sqi)
    peaks = detect_qrs(filtered, fs_hz) if r_peaks is None else np.asarray(r_peaks, dtype=np.int64)
    return combine(checks, beat_checks(peaks, filtered, fs_hz))


def combine(signal: SignalChecks, beats: BeatChecks | None) -> QualityReport:
    """Merge the beat-independent and (optional) beat-level checks into one report."""
    if signal.reason is not None or beats is None:
        return QualityReport(ok=signal.reason is None, reason=signal.reason, sqi=signal.sqi)
    return QualityReport(ok=beats.reason is None, reason=beats.reason, sqi=signal.sqi * beats.morphology)


def signal_checks(raw_mv: np.ndarray, filtered_mv: np.ndarray, fs_hz: float) -> SignalChecks:
    """Beat-independent checks of one lead given its raw and 0.5-40 Hz band-passed samples (mV)."""
    n = raw_mv.size
    seg = max(1, round(FLAT_SEGMENT_S * fs_hz))
    n_seg = max(1, n // seg)
    segments = filtered_mv[: n_seg * seg].reshape(n_seg, -1) if n >= seg else filtered_mv[None, :]
    flat = np.ptp(segments, axis=1) < FLAT_PTP_MV
    if 2 * int(flat.sum()) >= flat.size:
        return SignalChecks(sqi=0.0, reason=FLAT_LINE)

    if _rail_fraction(raw_mv, max(2, round(RAIL_RUN_S * fs_hz))) >= RAIL_FRACTION:
        return SignalChecks(sqi=0.0, reason=SATURATION)

    spectrum = np.fft.rfft(raw_mv)
    power = spectrum.real**2 + spectrum.imag**2
    baseline_bin, hf_bin = _band_bins(n, fs_hz)
    ac = float(power[1:].sum())
    above_baseline = float(power[baseline_bin:].sum())
    hf_ratio = float(power[hf_bin:].sum()) / above_baseline if above_baseline > 0 else 1.0
    baseline_ratio = 1.0 - above_baseline / ac if ac > 0 else 1.0
    f_centred = filtered_mv - filtered_mv.mean()
    squared = f_centred * f_centred
    var = float(squared.mean())
    kurt = float(np.dot(squared, squared)) / n / (var * var) if var > 0 else 0.0
    amplitude = max(float(filtered_mv.max()), -float(filtered_mv.min()))

    sqi = (
        _ramp(hf_ratio, good=0.10, bad=0.50)
        * _ramp(baseline_ratio, good=0.90, bad=0.99)
        * _ramp(kurt, good=5.0, bad=2.8)
        * _ramp(amplitude, good=6.0, bad=12.0)
    )
    noisy = (
        hf_ratio > HF_RATIO_MAX
        or baseline_ratio > BASELINE_RATIO_MAX
        or amplitude > PEAK_AMPLITUDE_MAX_MV
        or sqi < SQI_MIN
    )
    return SignalChecks(sqi=sqi, reason=NOISE if noisy else None)


def beat_checks(r_peaks: np.ndarray, filtered_mv: np.ndarray, fs_hz: float) -> BeatChecks:
    """Beat-level checks of one lead given its R peaks and 0.5-40 Hz band-passed samples (mV).

    ``too-few-beats`` below 25 beats per minute of window (and at least 4), ``noise`` when
    :func:`morphology_consistency` of the +/-100 ms QRS segments is below 0.8 (detections on artefacts
    have no look-alike), ``non-physiological-rr`` for an RR interval outside 0.2-3.0 s.
    """
    duration_min = filtered_mv.size / fs_hz / 60.0
    if r_peaks.size < max(4, math.floor(MIN_HR_BPM * duration_min)):
        return BeatChecks(morphology=0.0, reason=TOO_FEW_BEATS)
    corr = morphology_consistency(filtered_mv, r_peaks, max(1, round(QRS_HALF_WIDTH_S * fs_hz)))
    morphology = _ramp(corr, good=0.95, bad=0.6)
    if corr < MORPHOLOGY_CORR_MIN:
        return BeatChecks(morphology=morphology, reason=NOISE)
    rr_s = np.diff(r_peaks) / fs_hz
    if rr_s.min() < RR_MIN_S or rr_s.max() > RR_MAX_S:
        return BeatChecks(morphology=morphology, reason=NON_PHYSIOLOGICAL_RR)
    return BeatChecks(morphology=morphology, reason=None)


def morphology_consistency(filtered_mv: np.ndarray, r_peaks: np.ndarray, half_width: int) -> float:
    """Mean over beats of the best Pearson correlation of a beat's QRS segment with any other beat's.

    Each segment spans ``+/-half_width`` samples around the R peak; beats too close to the window
    edges are skipped. Real complexes, ectopic and paced ones included, have near-identical
    partners; detections on artefacts do not. 0 when fewer than two beats remain.
    """
    inner = r_peaks[(r_peaks >= half_width) & (r_peaks < filtered_mv.size - half_width)]
    if inner.size < 2:
        return 0.0
    beats = filtered_mv[inner[:, None] + np.arange(-half_width, half_width + 1)[None, :]]
    beats = beats - beats.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(beats, axis=1)
    if not np.all(norms > 0):
        return 0.0
    beats = beats / norms[:, None]
    corr = beats @ beats.T
    np.fill_diagonal(corr, -1.0)
    return float(np.mean(corr.max(axis=1)))


@lru_cache(maxsize=32)
def _band_bins(n_samples: int, fs_hz: float) -> tuple[int, int]:
    """First rfft bins strictly above the baseline and high-frequency edges."""
    freqs = np.fft.rfftfreq(n_samples, 1.0 / fs_hz)
    return int(np.searchsorted(freqs, BASELINE_EDGE_HZ, side="right")), int(
        np.searchsorted(freqs, HF_EDGE_HZ, side="right")
    )


def _ramp(value: float, good: float, bad: float) -> float:
    """Linear score: 1 at ``good``, 0 at ``bad`` (either direction), clipped to [0, 1]."""
    return min(1.0, max(0.0, (value - bad) / (good - bad)))


def _rail_fraction(x: np.ndarray, min_run: int) -> float:
    lo = float(x.min())
    hi = float(x.max())
    tol = RAIL_TOLERANCE * (hi - lo)
    at_rail = (x >= hi - tol) | (x <= lo + tol)
    edges = np.diff(np.concatenate(([0], at_rail.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    lengths = ends - starts
    return float(lengths[lengths >= min_run].sum()) / x.size
