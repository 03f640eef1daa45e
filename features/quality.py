"""Signal-quality index and an explicit scorable/unscorable verdict for one ECG lead.

The gate runs beat-independent checks first (lead off, clipping, spectral noise, amplitude) and then
beat-level checks on the detected R peaks (enough beats, QRS look-alikes, template match, RR range).

Template match: why
-------------------
Motion artefact and electrode noise, what makes CinC 2017 label a recording ``~`` (too noisy), mostly lie
in the ECG band: the spectral checks (power above 40 Hz, baseline power, kurtosis) pass about 80 % of the
10-s windows of those recordings. What such noise does destroy is the beat-to-beat reproducibility of
the QRS complex: the detector fires on artefacts, and the complexes it still finds are distorted and
rescaled by the noise riding on them. Atrial fibrillation changes the *timing* of beats and adds small
f-waves but keeps the ventricular complexes alike, so a morphology test catches noise without the trap
of an RR-irregularity test, which would turn AF away. Nothing in the check looks at RR intervals.

Template match: how (:func:`template_match`)
--------------------------------------------
1. Cut +/-150 ms around each R peak (the QRS and the start of ST) from the 0.5-40 Hz band-passed lead.
2. Take the sample-wise median of the beats as the template, align each beat to it by the lag of
   maximal correlation within +/-80 ms (the detector's fiducial point jumps between Q, R and S on some
   morphologies: paced MIT-BIH 102 fails without this), and take the median of the aligned beats as
   the template.
3. Score each beat by its Pearson correlation with that template times its amplitude consistency
   ``min(a, 1/a)`` (``a``: its projection on the template over the median projection, about 0 for an
   inverted beat; artefacts shaped like a QRS are rarely of the right size).
4. Beats scoring below 0.7 get a second template of their own when there are at least 3 of them; those
   scoring at least 0.85 against it keep that score. Ventricular ectopy, paced and fusion beats repeat
   their shape; noise does not (without this, 20-35 % of the windows of MIT-BIH 102 and 200 failed).
5. The window's score is the mean over beats, in effect the fraction of beats that look like beats.
   It fails with ``noise`` below :data:`TEMPLATE_MATCH_MIN` = 0.72.

Threshold: where it comes from
------------------------------
Fitted on the CinC 2017 training + validation records only (:mod:`models.splits`), resampled to 250 Hz
and cut as ``models.evaluate`` cuts them: 10-s windows ending on a 10-s grid, a record shorter than a
window zero-padded; a record is unscorable when none of its windows passes. Record-level outcome, before
-> at 0.72 (128 ``~``, 298 A, 2005 N, 995 O records):

=========  ==================  ================  =================  =================
threshold  ``~`` unscorable    A lost            N lost             O lost
=========  ==================  ================  =================  =================
none       8.6 % (11)          0.0 % (0)         0.2 % (4)          0.3 % (3)
0.66       67.2 % (86)         1.0 % (3)         1.3 % (26)         1.2 % (12)
0.69       77.3 % (99)         1.0 % (3)         1.6 % (32)         1.8 % (18)
0.72       81.2 % (104)        1.7 % (5)         2.4 % (49)         2.3 % (23)
=========  ==================  ================  =================  =================

The three AF recordings lost at 0.69 are noisy throughout; 0.70-0.72 add two ~10-s single-window AF
recordings with one motion artefact (scores 0.699 and 0.702). 0.72 was taken for the margin on the ``~``
requirement (0.71 loses the same AF records and catches two ``~`` records fewer). Per 10-s window the cost is larger,
since CinC labels whole recordings and many N/O recordings carry motion bursts: windows failing go from
1.0 to 8.1 % (N), 1.6 to 8.7 % (O), 1.5 to 6.2 % (A) and 19 to 89 % (``~``). MIT-BIH training +
validation records, 10-s two-lead windows (a window fails when both leads fail): 0.16 -> 0.81 %, AF
windows 0 -> 0.2 %. The threshold is a window-level rule: for 30-s windows the window-level rates are
about the same (N 10 %), but a recording then has fewer windows to pass, so record-level losses are larger
(N about 12 %); a service run on 30-s windows would want its own threshold.

Tried on the same data and not kept: kurtosis, skewness, pSQI (5-15 over 5-40 Hz power), baseline power,
the fraction of 2-s segments of outlying amplitude, and a logistic combination of all of them with the
template score (no better than the template score alone); the fraction of beats with a look-alike among
the other beats (noise detections find look-alikes of each other); trimmed means and medians of the beat
scores (same trade-off); the beat rate (helps, but it is a rhythm feature: fast AF).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

import numpy as np

from features._stats import mean, mean_rows
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
    "template_match",
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
TEMPLATE_HALF_WIDTH_S = 0.15
TEMPLATE_MAX_LAG_S = 0.08
TEMPLATE_MIN_BEATS = 3
TEMPLATE_OUTLIER_MAX = 0.7
TEMPLATE_RESCUE_MIN = 0.85
TEMPLATE_MATCH_MIN = 0.72
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
    correlation of a QRS with another below 0.8) or do not reproduce the median beat
    (:func:`template_match` below 0.72; see the module docstring) and ``non-physiological-rr`` (an RR
    interval outside 0.2-3.0 s).

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
        were checked, QRS morphology consistency and template match.
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
    """Beat-independent checks of one lead given its raw and 0.5-40 Hz band-passed samples (mV, computed
    in float64: other dtypes are converted)."""
    return signal_checks_rows(
        np.asarray(raw_mv, dtype=np.float64)[None, :], np.asarray(filtered_mv, dtype=np.float64)[None, :], fs_hz
    )[0]


def signal_checks_rows(raw_mv: np.ndarray, filtered_mv: np.ndarray, fs_hz: float) -> list[SignalChecks]:
    """:func:`signal_checks` of a stack of leads, float64 arrays of shape ``(n_rows, n_samples)``.

    The array statistics (segment peak-to-peak, rails, spectrum, moments) are computed for all rows at
    once; every row's verdict is exactly what :func:`signal_checks` gives for that lead alone (reductions
    run along the contiguous last axis, row by row, in the same order as on a 1-D array).
    """
    raw = np.ascontiguousarray(raw_mv, dtype=np.float64)
    filtered = np.ascontiguousarray(filtered_mv, dtype=np.float64)
    n_rows, n = raw.shape
    seg = max(1, round(FLAT_SEGMENT_S * fs_hz))
    n_seg = max(1, n // seg)
    segments = filtered[:, : n_seg * seg].reshape(n_rows, n_seg, -1) if n >= seg else filtered[:, None, :]
    flat = (segments.max(axis=2) - segments.min(axis=2)) < FLAT_PTP_MV  # numpy.ptp
    flat_line = (2 * np.count_nonzero(flat, axis=1) >= flat.shape[1]).tolist()

    lo = raw.min(axis=1)
    hi = raw.max(axis=1)
    rail_tol = RAIL_TOLERANCE * (hi - lo)
    at_rail = (raw >= (hi - rail_tol)[:, None]) | (raw <= (lo + rail_tol)[:, None])
    rail_counts = np.count_nonzero(at_rail, axis=1).tolist()
    min_run = max(2, round(RAIL_RUN_S * fs_hz))

    spectrum = np.fft.rfft(raw, axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    baseline_bin, hf_bin = _band_bins(n, fs_hz)
    ac_all = power[:, 1:].sum(axis=1).tolist()
    above_all = power[:, baseline_bin:].sum(axis=1).tolist()
    hf_all = power[:, hf_bin:].sum(axis=1).tolist()
    f_centred = filtered - mean_rows(filtered)
    squared = f_centred * f_centred
    var_all = mean_rows(squared).ravel().tolist()
    # Row-wise np.dot (a BLAS dot each, as in the 1-D form; einsum would sum in another order).
    fourth_all = (squared[:, None, :] @ squared[:, :, None]).reshape(n_rows).tolist()
    top_all = filtered.max(axis=1).tolist()
    bottom_all = filtered.min(axis=1).tolist()

    out: list[SignalChecks] = []
    for row in range(n_rows):
        if flat_line[row]:
            out.append(SignalChecks(sqi=0.0, reason=FLAT_LINE))
            continue
        if rail_counts[row] >= min_run and _rail_runs(at_rail[row], min_run) >= RAIL_FRACTION:
            out.append(SignalChecks(sqi=0.0, reason=SATURATION))
            continue
        ac = ac_all[row]
        above_baseline = above_all[row]
        hf_ratio = hf_all[row] / above_baseline if above_baseline > 0 else 1.0
        baseline_ratio = 1.0 - above_baseline / ac if ac > 0 else 1.0
        var = var_all[row]
        kurt = fourth_all[row] / n / (var * var) if var > 0 else 0.0
        amplitude = max(top_all[row], -bottom_all[row])
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
        out.append(SignalChecks(sqi=sqi, reason=NOISE if noisy else None))
    return out


def beat_checks(r_peaks: np.ndarray, filtered_mv: np.ndarray, fs_hz: float) -> BeatChecks:
    """Beat-level checks of one lead given its R peaks and 0.5-40 Hz band-passed samples (mV).

    ``too-few-beats`` below 25 beats per minute of window (and at least 4), ``noise`` when
    :func:`morphology_consistency` of the +/-100 ms QRS segments is below 0.8 (detections on artefacts
    have no look-alike) or when :func:`template_match` of the +/-150 ms beats is below 0.72 (fewer than
    about three beats in four reproduce the median beat, or a second repeating morphology: noise over much
    of the window), ``non-physiological-rr`` for an RR interval outside 0.2-3.0 s. The returned
    ``morphology`` score is the product of the ramps of both correlation measures.
    """
    duration_min = filtered_mv.size / fs_hz / 60.0
    if r_peaks.size < max(4, math.floor(MIN_HR_BPM * duration_min)):
        return BeatChecks(morphology=0.0, reason=TOO_FEW_BEATS)
    corr = morphology_consistency(filtered_mv, r_peaks, max(1, round(QRS_HALF_WIDTH_S * fs_hz)))
    morphology = _ramp(corr, good=0.95, bad=0.6)
    if corr < MORPHOLOGY_CORR_MIN:
        return BeatChecks(morphology=morphology, reason=NOISE)
    match = template_match(
        filtered_mv,
        r_peaks,
        max(1, round(TEMPLATE_HALF_WIDTH_S * fs_hz)),
        max(1, round(TEMPLATE_MAX_LAG_S * fs_hz)),
        enough=TEMPLATE_MATCH_MIN,
    )
    if match is not None:
        morphology *= _ramp(match, good=0.9, bad=0.4)
        if match < TEMPLATE_MATCH_MIN:
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
    beats = beats - mean_rows(beats)
    norms = np.sqrt(np.add.reduce(beats * beats, axis=1))  # numpy.linalg.norm(beats, axis=1)
    if not np.all(norms > 0):
        return 0.0
    beats = beats / norms[:, None]
    corr = beats @ beats.T
    np.fill_diagonal(corr, -1.0)
    return mean(corr.max(axis=1))


def template_match(
    filtered_mv: np.ndarray, r_peaks: np.ndarray, half_width: int, max_lag: int, enough: float | None = None
) -> float | None:
    """Mean agreement of the beats with their median beat, tolerant to fiducial jitter and ectopy; in [0, 1].

    Each beat is the ``+/-half_width`` samples around its R peak. The template is the sample-wise
    median of the (zero-mean) beats; every beat is aligned to it by the lag of maximal correlation within
    ``+/-max_lag`` samples and the template is formed again from the aligned beats. A beat scores its
    Pearson correlation, at that lag, with the new template times ``min(a, 1/a)``, ``a`` being its
    projection on the template over the median projection (about 0 when the beat is inverted). The beats scoring below
    0.7 get a second chance: when there are at least 3, they get a template of their own in the same way,
    and those that score at least 0.85 against it keep that score (a second morphology that repeats:
    ventricular ectopy, paced and fusion beats; noise does not repeat that well). The result is the mean
    over beats; beats whose span leaves the window are skipped.

    Parameters
    ----------
    filtered_mv : numpy.ndarray
        One band-passed lead in millivolts, shape ``(n_samples,)``.
    r_peaks : numpy.ndarray
        R-peak sample indices.
    half_width, max_lag : int
        Beat half-width and largest alignment shift, in samples.
    enough : float, optional
        Skip the second template when the score without it is already at least this (it can only raise
        the score); the gate passes its threshold, which saves the work on windows that pass anyway.

    Returns
    -------
    float or None
        The score (1: identical beats; noise throughout gives about 0.3-0.6), or None when fewer than
        3 beats lie far enough from the window edges to be scored.
    """
    reach = half_width + max_lag
    inner = r_peaks[(r_peaks >= reach) & (r_peaks < filtered_mv.size - reach)]
    n_beats = inner.size
    if n_beats < TEMPLATE_MIN_BEATS:
        return None
    width = 2 * half_width + 1
    span = filtered_mv[inner[:, None] + np.arange(-reach, reach + 1)[None, :]]
    # Sum and sum of squares of every width-long sub-window (one per lag) in one product.
    _, box, _ = _lag_bands(width, 2 * max_lag + 1)
    sums = np.concatenate((span, span * span)) @ box
    s1 = sums[:n_beats]
    var = sums[n_beats:] - s1 * s1 / width
    norms = np.sqrt(var, out=np.full_like(var, np.inf), where=var > 1e-18)
    scores = _beat_scores(span, norms, half_width, max_lag)
    outliers = np.flatnonzero(scores < TEMPLATE_OUTLIER_MAX)
    if outliers.size >= TEMPLATE_MIN_BEATS and (enough is None or mean(scores) < enough):
        second = _beat_scores(span[outliers], norms[outliers], half_width, max_lag)
        keep = second >= TEMPLATE_RESCUE_MIN
        scores[outliers[keep]] = second[keep]
    return mean(scores)


def _beat_scores(span: np.ndarray, norms: np.ndarray, half_width: int, max_lag: int) -> np.ndarray:
    """Per beat: best-lag correlation with the beats' median template times amplitude consistency.

    ``span`` holds each beat with ``max_lag`` extra samples on either side, ``norms`` the norm of each
    zero-mean sub-window at every lag (``inf`` where flat).
    """
    n_beats = span.shape[0]
    width = 2 * half_width + 1
    n_lags = 2 * max_lag + 1
    flat, box, offsets = _lag_bands(width, n_lags)
    rows = np.arange(n_beats)
    starts = rows * span.shape[1]
    flat_span = span.ravel()
    middle = n_beats // 2
    # Align: best lag of each beat against the median of the beats as detected.
    centred = span[:, max_lag : max_lag + width]
    centred = centred - mean_rows(centred)
    template = np.partition(centred, middle, axis=0)[middle]  # (upper) median beat
    # Projections at every lag in one product: column k of the banded matrix holds the template shifted
    # by k samples (the template need not be zero-mean here: only the arg max over lags is used).
    band = np.zeros(box.size)
    band[flat] = np.repeat(template - mean(template), n_lags)
    lag = np.argmax((span @ band.reshape(box.shape)) / norms, axis=1)
    # Score: each aligned beat against the median of the aligned beats.
    aligned = flat_span[(starts + lag)[:, None] + offsets]
    centred = aligned - mean_rows(aligned)
    template = np.partition(centred, middle, axis=0)[middle]
    template -= mean(template)
    t_norm = float(np.sqrt(template @ template))
    if t_norm == 0.0:
        return np.zeros(n_beats)
    best = centred @ template
    corr = best / (norms[rows, lag] * t_norm)
    scale = float(np.partition(best, middle)[middle])
    if scale <= 0.0:
        return np.zeros(n_beats)
    ratio = np.maximum(best / scale, 1e-12)  # an inverted beat scores ~0
    return corr * np.minimum(ratio, 1.0 / ratio)


@lru_cache(maxsize=16)
def _lag_bands(width: int, n_lags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices of a ``(width + n_lags - 1, n_lags)`` banded matrix, the all-ones band and ``arange(width)``."""
    rows = np.arange(width)[:, None] + np.arange(n_lags)[None, :]
    flat = (rows * n_lags + np.arange(n_lags)[None, :]).ravel()
    box = np.zeros((width + n_lags - 1) * n_lags)
    box[flat] = 1.0
    return flat, box.reshape(width + n_lags - 1, n_lags), np.arange(width)


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


def _rail_runs(at_rail: np.ndarray, min_run: int) -> float:
    """Fraction of the samples lying in runs of at least ``min_run`` consecutive True values."""
    edges = np.diff(np.concatenate(([0], at_rail.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    lengths = ends - starts
    return float(lengths[lengths >= min_run].sum()) / at_rail.size
