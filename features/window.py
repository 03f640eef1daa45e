"""Per-window feature extraction: lead selection, QRS detection, quality verdict, RR vector; one window
at a time (:func:`extract`) or many (:func:`extract_batch`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features._stats import median
from features.errors import FeatureError
from features.filters import bandpass
from features.qrs import detect_from_energy, detect_qrs, qrs_energy
from features.quality import QualityReport, SignalChecks, beat_checks, combine, signal_checks_rows
from features.rr import rr_features

__all__ = ["BATCH_CHUNK", "MIN_FS_HZ", "MIN_WINDOW_S", "WindowFeatures", "extract", "extract_batch"]

MIN_FS_HZ = 100.0
MIN_WINDOW_S = 2.0
BATCH_CHUNK = 16
"""Most windows :func:`extract_batch` stacks at once. It bounds the working set: a float64 stack of 16
two-lead 10-s windows at 250 Hz is 640 kB, and the band-pass and spectrum hold a few such arrays; on a
1 MB-L2 core 16 was fastest (8-24 within 5 %, 64 15 % slower than 16)."""


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

    See Also
    --------
    extract_batch : the same for many windows at once, faster per window.
    """
    x = _checked(signal_mv, fs_hz)
    return _extract_stack(np.ascontiguousarray(x, dtype=np.float64)[None], float(fs_hz))[0]


def extract_batch(signals: Sequence[np.ndarray], fs_hz: float) -> list[WindowFeatures]:
    """:func:`extract` of many windows at once: the same results, to the last bit, in less time.

    The windows are grouped by shape and, in chunks of up to :data:`BATCH_CHUNK` windows, their
    array work is done on stacked arrays: the 0.5-40 Hz and 5-15 Hz band-passes, the slope, the
    beat-independent quality statistics (spectrum, moments, flat-line and rail tests). Every step is
    row-independent, so each window gets exactly what ``extract`` computes for it; the sequential
    parts (QRS thresholding, beat-level checks, RR features) still run window by window.

    Parameters
    ----------
    signals : sequence of numpy.ndarray
        Windows in millivolts, each of shape ``(n_leads, n_samples)`` as :func:`extract` takes them
        (any real dtype; shapes may differ from window to window), or one array of shape
        ``(n_windows, n_leads, n_samples)``.
    fs_hz : float
        Their common sample rate in Hz, at least 100.

    Returns
    -------
    list of WindowFeatures
        One per window, in input order, equal field by field (``numpy.array_equal`` for the arrays,
        ``==`` for the rest) to ``[extract(w, fs_hz) for w in signals]``. An empty input gives ``[]``.

    Raises
    ------
    FeatureError
        When any window is one :func:`extract` would refuse; nothing is returned for the other
        windows. All windows are checked before any is processed, in order, and the error is that of
        the first bad window, its message prefixed with ``"window <index>: "`` (the index in
        ``signals``).

    Examples
    --------
    >>> from features.bench import synthetic_ecg
    >>> windows = [synthetic_ecg(seed=s) for s in range(3)]
    >>> [f.r_peaks.size for f in extract_batch(windows, 250.0)] == [extract(w, 250.0).r_peaks.size for w in windows]
    True
    """
    checked: list[np.ndarray] = []
    for index, signal in enumerate(signals):
        try:
            checked.append(_checked(signal, fs_hz))
        except FeatureError as err:
            raise FeatureError(f"window {index}: {err}") from err
    fs = float(fs_hz)
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, x in enumerate(checked):
        groups.setdefault(x.shape, []).append(index)
    results: list[WindowFeatures | None] = [None] * len(checked)
    for shape, members in groups.items():
        for start in range(0, len(members), BATCH_CHUNK):
            chunk = members[start : start + BATCH_CHUNK]
            stack = np.empty((len(chunk), *shape))
            for row, index in enumerate(chunk):
                stack[row] = checked[index]  # the float64 cast extract does
            for index, features in zip(chunk, _extract_stack(stack, fs), strict=True):
                results[index] = features
    return results  # type: ignore[return-value]  # every slot is filled


def _checked(signal_mv: np.ndarray, fs_hz: float) -> np.ndarray:
    """The window as an array once it passes :func:`extract`'s input checks (same order, same messages)."""
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
    if not np.isfinite(x).all():  # as on the float64 copy: casting a real value keeps it (non-)finite
        raise FeatureError("signal holds non-finite samples")
    return x


def _extract_stack(raw: np.ndarray, fs: float) -> list[WindowFeatures]:
    """:func:`extract` of the windows of ``raw``, float64 of shape ``(n_windows, n_leads, n_samples)``."""
    n_windows, n_leads, n_samples = raw.shape
    rows = raw.reshape(n_windows * n_leads, n_samples)
    filtered = bandpass(rows, fs)
    checks = signal_checks_rows(rows, filtered, fs)
    orders: list[list[int]] = []
    for w in range(n_windows):
        first = w * n_leads
        leads = checks[first : first + n_leads]
        order = sorted(range(n_leads), key=lambda i: (leads[i].reason is not None, -leads[i].sqi, i))
        orders.append([first + i for i in order])
    best_leads = filtered[[order[0] for order in orders]]
    slopes, energies = qrs_energy(best_leads, fs)

    out: list[WindowFeatures] = []
    for w, order in enumerate(orders):
        best_peaks = detect_from_energy(best_leads[w], slopes[w], energies[w], fs)
        out.append(_choose(order, checks, filtered, best_peaks, fs))
    return out


def _choose(
    order: list[int], checks: list[SignalChecks], filtered: np.ndarray, best_peaks: np.ndarray, fs: float
) -> WindowFeatures:
    """The window's features given its leads (rows of ``checks``/``filtered``) in order of quality and the
    R peaks of the first: that lead when it passes, else the first other passing lead that passes."""
    best = order[0]
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
    heart_rate = 60.0 / median(rr_s) if quality.ok else None
    return WindowFeatures(
        quality=quality,
        r_peaks=peaks,
        rr_s=rr_s,
        heart_rate_bpm=heart_rate,
        rr_vector=rr_features(rr_s),
    )
