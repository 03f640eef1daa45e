"""Pan-Tompkins-style QRS detector with adaptive thresholds, T-wave rejection and search-back."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal as sps

from features._stats import median, median_rows
from features.errors import FeatureError
from features.filters import bandpass

__all__ = ["detect_from_energy", "detect_qrs", "qrs_energy"]

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
    slope, energy = qrs_energy(x[None, :], fs_hz)
    return detect_from_energy(x, slope[0], energy[0], fs_hz)


def qrs_energy(leads_mv: np.ndarray, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """The detector's front end for a stack of leads: slope of the 5-15 Hz band and its 150-ms energy.

    Parameters
    ----------
    leads_mv : numpy.ndarray
        Leads in millivolts, float64, shape ``(n_rows, n_samples)``: one lead of one window per row.
    fs_hz : float
        Sample rate in Hz.

    Returns
    -------
    slope, energy : numpy.ndarray
        Float64 arrays of the input's shape. Each row is exactly what that lead alone gives: the band-pass
        and the gradient work row by row, and the moving average stays one ``numpy.convolve`` per row
        (its BLAS dot products are not reproduced to the bit by any vectorised form).
    """
    qrs_band = bandpass(leads_mv, fs_hz, 5.0, 15.0, order=2)
    slope = np.gradient(qrs_band, axis=-1)
    squared = slope * slope
    kernel = _integration_kernel(max(1, round(_INTEGRATION_S * fs_hz)))
    energy = np.empty_like(squared)
    for row in range(squared.shape[0]):
        energy[row] = np.convolve(squared[row], kernel, mode="same")
    np.sqrt(np.maximum(energy, 0.0, out=energy), out=energy)  # energy.clip(0.0)
    return slope, energy


def detect_from_energy(signal_mv: np.ndarray, slope: np.ndarray, energy: np.ndarray, fs_hz: float) -> np.ndarray:
    """R peaks of one lead (float64, shape ``(n_samples,)``) from its :func:`qrs_energy` rows: the
    sequential part of :func:`detect_qrs` (peak picking, adaptive thresholds, search-back, refinement)."""
    x = signal_mv
    refractory = max(1, round(_REFRACTORY_S * fs_hz))
    candidates, _ = sps.find_peaks(energy, distance=refractory)
    if candidates.size == 0:
        return _EMPTY
    heights = energy[candidates]
    peak_slopes = _max_abs_around(slope, candidates, round(0.075 * fs_hz))

    block = max(1, round(1.5 * fs_hz))
    n_blocks = max(1, energy.size // block)
    block_max = energy[: n_blocks * block].reshape(n_blocks, -1).max(axis=1) if energy.size >= block else energy
    spk = median(block_max)
    npk = median(energy)
    if spk <= 0.0:
        return _EMPTY

    # Python scalars: the loop runs once per candidate and numpy scalar access costs more than the arithmetic.
    position = candidates.tolist()
    height = heights.tolist()
    steepness = peak_slopes.tolist()
    accepted: list[int] = []
    t_wave_gap = round(_T_WAVE_WINDOW_S * fs_hz)
    for i in range(len(position)):
        h = height[i]
        threshold = npk + _THRESHOLD_FRACTION * (spk - npk)
        if h > threshold:
            if accepted:
                last = accepted[-1]
                if position[i] - position[last] < t_wave_gap and steepness[i] < 0.5 * steepness[last]:
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


@lru_cache(maxsize=16)
def _offsets(half_width: int) -> np.ndarray:
    offsets = np.arange(-half_width, half_width + 1)
    offsets.setflags(write=False)
    return offsets


@lru_cache(maxsize=16)
def _integration_kernel(width: int) -> np.ndarray:
    kernel = np.full(width, 1.0 / width)
    kernel.setflags(write=False)
    return kernel


def _max_abs_around(x: np.ndarray, idx: np.ndarray, half_width: int) -> np.ndarray:
    offsets = _offsets(half_width)
    pos = np.minimum(np.maximum(idx[:, None] + offsets[None, :], 0), x.size - 1)  # np.clip, without its overhead
    return np.abs(x[pos]).max(axis=1)


def _search_back(
    candidates: np.ndarray, heights: np.ndarray, accepted: list[int], threshold: float, fs_hz: float
) -> list[int]:
    if len(accepted) < 3:
        return accepted
    beats = candidates[accepted]
    limit = _SEARCHBACK_FACTOR * median(np.diff(beats))
    long_gaps = np.flatnonzero(np.diff(beats) > limit).tolist()
    if not long_gaps:
        return accepted
    min_gap = round(_T_WAVE_WINDOW_S * fs_hz)
    added: list[int] = []
    for gap in long_gaps:
        a, b = accepted[gap], accepted[gap + 1]
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
    offsets = _offsets(half_width)
    pos = np.minimum(np.maximum(idx[:, None] + offsets[None, :], 0), x.size - 1)  # np.clip, without its overhead
    seg = x[pos]
    seg = seg - median_rows(seg)
    extremes = np.empty((2, seg.shape[0]))
    seg.max(axis=1, out=extremes[0])
    np.negative(seg.min(axis=1), out=extremes[1])
    up, down = median_rows(extremes).ravel().tolist()
    polarity = 1.0 if up >= down else -1.0
    seg = polarity * seg
    best = np.argmax(seg, axis=1)
    rows = np.arange(pos.shape[0])
    peaks = pos[rows, best]
    if peaks.size < 2:
        return peaks.astype(np.int64)
    amplitude = seg[rows, best].tolist()
    at = peaks.tolist()
    keep = np.ones(peaks.size, dtype=bool)
    last = 0
    for i in range(1, len(at)):
        if at[i] - at[last] >= refractory:
            last = i
        elif amplitude[i] > amplitude[last]:
            keep[last] = False
            last = i
        else:
            keep[i] = False
    return peaks[keep].astype(np.int64)
