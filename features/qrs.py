"""Pan-Tompkins-style QRS detector with adaptive thresholds, T-wave rejection and search-back."""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

from features.errors import FeatureError
from features.filters import bandpass

__all__ = ["detect_qrs"]

_REFRACTORY_S = 0.200
_T_WAVE_WINDOW_S = 0.360
_INTEGRATION_S = 0.150
_REFINE_S = 0.060
_SEARCHBACK_FACTOR = 1.66
_THRESHOLD_FRACTION = 0.30
_EMPTY = np.zeros(0, dtype=np.int64)


def detect_qrs(signal_mv: np.ndarray, fs_hz: float) -> np.ndarray:
    """Detect QRS complexes in one ECG lead and return the R-peak sample indices.

    The lead is band-passed to the QRS band (5-15 Hz), differentiated, squared and integrated
    over 150 ms. Local maxima of the integrated energy at least 200 ms apart (refractory period)
    are classified with Pan-Tompkins running signal/noise levels; candidates within 360 ms of
    the previous beat whose maximal slope is below half of that beat's are rejected as T waves,
    and gaps longer than 1.66 median RR intervals are searched again at half the threshold.
    Each detection is then moved to the extreme of ``signal_mv`` within +/-60 ms in the window's dominant
    QRS polarity, so biphasic complexes are marked consistently.

    Parameters
    ----------
    signal_mv : numpy.ndarray
        One lead in millivolts, shape ``(n_samples,)``; raw or band-passed.
    fs_hz : float
        Sample rate in Hz.

    Returns
    -------
    numpy.ndarray
        Sorted R-peak indices (int64) into ``signal_mv``; empty when no beat is found.
    """
    x = np.asarray(signal_mv, dtype=np.float64)
    if x.ndim != 1:
        raise FeatureError(f"detect_qrs expects one lead of shape (n_samples,), got {x.shape}")
    qrs_band = bandpass(x, fs_hz, 5.0, 15.0, order=2)
    slope = np.gradient(qrs_band)
    width = max(1, round(_INTEGRATION_S * fs_hz))
    energy = np.sqrt(np.convolve(slope * slope, np.full(width, 1.0 / width), mode="same").clip(0.0))
    refractory = max(1, round(_REFRACTORY_S * fs_hz))
    candidates, _ = sps.find_peaks(energy, distance=refractory)
    if candidates.size == 0:
        return _EMPTY
    heights = energy[candidates]
    peak_slopes = _max_abs_around(slope, candidates, round(0.075 * fs_hz))

    block = max(1, round(1.5 * fs_hz))
    n_blocks = max(1, energy.size // block)
    block_max = energy[: n_blocks * block].reshape(n_blocks, -1).max(axis=1) if energy.size >= block else energy
    spk = float(np.median(block_max))
    npk = float(np.median(energy))
    if spk <= 0.0:
        return _EMPTY

    accepted: list[int] = []
    t_wave_gap = round(_T_WAVE_WINDOW_S * fs_hz)
    for i in range(candidates.size):
        h = float(heights[i])
        threshold = npk + _THRESHOLD_FRACTION * (spk - npk)
        if h > threshold:
            if accepted:
                last = accepted[-1]
                if candidates[i] - candidates[last] < t_wave_gap and peak_slopes[i] < 0.5 * peak_slopes[last]:
                    npk = 0.125 * h + 0.875 * npk
                    continue
            accepted.append(i)
            spk = 0.125 * h + 0.875 * spk
        else:
            npk = 0.125 * h + 0.875 * npk

    final_threshold = npk + _THRESHOLD_FRACTION * (spk - npk)
    accepted = _search_back(candidates, heights, accepted, 0.5 * final_threshold, fs_hz)
    if not accepted:
        return _EMPTY
    return _refine(x, candidates[np.asarray(accepted)], max(1, round(_REFINE_S * fs_hz)), refractory)


def _max_abs_around(x: np.ndarray, idx: np.ndarray, half_width: int) -> np.ndarray:
    offsets = np.arange(-half_width, half_width + 1)
    pos = np.clip(idx[:, None] + offsets[None, :], 0, x.size - 1)
    return np.abs(x[pos]).max(axis=1)


def _search_back(
    candidates: np.ndarray, heights: np.ndarray, accepted: list[int], threshold: float, fs_hz: float
) -> list[int]:
    if len(accepted) < 3:
        return accepted
    rr = np.diff(candidates[accepted])
    limit = _SEARCHBACK_FACTOR * float(np.median(rr))
    min_gap = round(_T_WAVE_WINDOW_S * fs_hz)
    added: list[int] = []
    for a, b in zip(accepted[:-1], accepted[1:], strict=True):
        if candidates[b] - candidates[a] <= limit:
            continue
        inner = np.arange(a + 1, b)
        if inner.size == 0:
            continue
        ok = (
            (heights[inner] > threshold)
            & (candidates[inner] - candidates[a] >= min_gap)
            & (candidates[b] - candidates[inner] >= min_gap)
        )
        if ok.any():
            pick = inner[ok]
            added.append(int(pick[np.argmax(heights[pick])]))
    if not added:
        return accepted
    return sorted(accepted + added)


def _refine(x: np.ndarray, idx: np.ndarray, half_width: int, refractory: int) -> np.ndarray:
    offsets = np.arange(-half_width, half_width + 1)
    pos = np.clip(idx[:, None] + offsets[None, :], 0, x.size - 1)
    seg = x[pos] - np.median(x[pos], axis=1, keepdims=True)
    polarity = 1.0 if np.median(seg.max(axis=1)) >= np.median(-seg.min(axis=1)) else -1.0
    seg = polarity * seg
    best = np.argmax(seg, axis=1)
    rows = np.arange(pos.shape[0])
    peaks = pos[rows, best]
    amplitude = seg[rows, best]
    keep = np.ones(peaks.size, dtype=bool)
    last = 0
    for i in range(1, peaks.size):
        if peaks[i] - peaks[last] >= refractory:
            last = i
        elif amplitude[i] > amplitude[last]:
            keep[last] = False
            last = i
        else:
            keep[i] = False
    return peaks[keep].astype(np.int64)
