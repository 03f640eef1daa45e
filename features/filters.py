"""Zero-phase Butterworth band-pass filtering with cached second-order sections."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy import signal as sps

from features.errors import FeatureError

__all__ = ["bandpass", "bandpass_sos"]


@lru_cache(maxsize=64)
def bandpass_sos(fs_hz: float, low_hz: float, high_hz: float, order: int = 2) -> np.ndarray:
    """Second-order sections of a Butterworth band-pass, cached per parameter set.

    Parameters
    ----------
    fs_hz : float
        Sample rate in Hz.
    low_hz, high_hz : float
        Pass-band edges in Hz. ``high_hz`` is capped at 45 % of ``fs_hz`` so a 40 Hz edge stays
        valid down to 90 Hz sampling.
    order : int
        Butterworth order of each (low and high) edge.

    Returns
    -------
    numpy.ndarray
        SOS array (shared by all callers, do not modify) of shape ``(n_sections, 6)``.
    """
    if not np.isfinite(fs_hz) or fs_hz <= 0:
        raise FeatureError(f"sample rate must be a positive finite number of Hz, got {fs_hz!r}")
    high = min(high_hz, 0.45 * fs_hz)
    if not 0 < low_hz < high:
        raise FeatureError(f"invalid pass band {low_hz}-{high_hz} Hz at fs={fs_hz} Hz")
    sos = sps.butter(order, (low_hz, high), btype="bandpass", fs=fs_hz, output="sos")
    return sos


@lru_cache(maxsize=64)
def _sos_zi(fs_hz: float, low_hz: float, high_hz: float, order: int) -> np.ndarray:
    """Steady-state initial conditions of :func:`bandpass_sos` (``sosfiltfilt`` recomputes them per call:
    a companion matrix and a linear solve, a fifth of the filter's time on a 10-s window)."""
    zi = sps.sosfilt_zi(bandpass_sos(fs_hz, low_hz, high_hz, order))
    zi.setflags(write=False)
    return zi


def bandpass(
    signal_mv: np.ndarray,
    fs_hz: float,
    low_hz: float = 0.5,
    high_hz: float = 40.0,
    order: int = 2,
) -> np.ndarray:
    """Zero-phase Butterworth band-pass along the last axis.

    Parameters
    ----------
    signal_mv : numpy.ndarray
        Signal in millivolts, shape ``(n_samples,)`` or ``(n_leads, n_samples)``. Rows are filtered
        independently and each row's result does not depend on the other rows, so windows stacked as
        rows filter to exactly what they would filter to one by one.
    fs_hz : float
        Sample rate in Hz.
    low_hz, high_hz : float
        Pass band in Hz (default 0.5-40 Hz: removes baseline wander and mains/EMG noise).
    order : int
        Butterworth order per edge; ``sosfiltfilt`` doubles the effective order.

    Returns
    -------
    numpy.ndarray
        Filtered signal in millivolts, same shape as the input, float64.
    """
    x = np.asarray(signal_mv)
    if x.ndim not in (1, 2):
        raise FeatureError(f"bandpass expects a 1-D or 2-D array, got shape {x.shape}")
    sos = bandpass_sos(float(fs_hz), float(low_hz), float(high_hz), int(order))
    padlen = 3 * (2 * sos.shape[0] + 1)
    if x.shape[-1] <= padlen:
        raise FeatureError(f"signal of {x.shape[-1]} samples is too short to filter (needs > {padlen})")
    # scipy.signal.sosfiltfilt (odd extension, forward-backward with steady-state initial conditions),
    # with the initial conditions cached; the result is the same to the last bit.
    zi = _sos_zi(float(fs_hz), float(low_hz), float(high_hz), int(order))
    rows = x.reshape(-1, x.shape[-1]) if x.ndim == 1 else x
    ext = np.concatenate(
        (2 * rows[:, :1] - rows[:, padlen:0:-1], rows, 2 * rows[:, -1:] - rows[:, -2 : -padlen - 2 : -1]), axis=1
    )
    if np.result_type(sos, ext) != np.float64 or _sosfilt_rows is None:
        y = _bandpass_public(sos, zi, ext, padlen)
    else:
        # sosfilt casts to float64 and filters a private C-contiguous copy; so do we, calling its kernel
        # directly (sosfilt's own argument handling costs more than filtering a 10-s lead).
        y = ext.astype(np.float64, order="C")  # ext is ours: no copy when it is float64 already
        _sosfilt_rows(sos, y, zi[None, :, :] * y[:, :1, None])
        y = y[:, ::-1].copy()
        _sosfilt_rows(sos, y, zi[None, :, :] * y[:, :1, None])
        y = np.ascontiguousarray(y[:, ::-1][:, padlen:-padlen])
    return y.reshape(x.shape)


def _bandpass_public(sos: np.ndarray, zi: np.ndarray, ext: np.ndarray, padlen: int) -> np.ndarray:
    """The forward-backward pass through :func:`scipy.signal.sosfilt` (any dtype ``sosfilt`` takes)."""
    zi = zi[:, None, :]
    y, _ = sps.sosfilt(sos, ext, axis=-1, zi=zi * ext[:, :1])
    y, _ = sps.sosfilt(sos, y[:, ::-1], axis=-1, zi=zi * y[:, -1:])
    return np.ascontiguousarray(y[:, ::-1][:, padlen:-padlen])


def _load_sosfilt_kernel() -> Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None:
    """scipy's in-place SOS kernel behind :func:`scipy.signal.sosfilt`, or None where it is not there
    (a private name) or does not reproduce ``sosfilt`` bit for bit on a probe."""
    try:
        from scipy.signal._sosfilt import _sosfilt  # noqa: PLC0415
    except ImportError:  # pragma: no cover - depends on the scipy build
        return None
    try:
        sos = sps.butter(2, (0.05, 0.3), btype="bandpass", output="sos")
        probe = np.random.default_rng(0).standard_normal((2, 64)).cumsum(axis=1)
        zi = sps.sosfilt_zi(sos)
        expected, _ = sps.sosfilt(sos, probe, axis=-1, zi=zi[:, None, :] * probe[:, :1])
        got = probe.copy()
        _sosfilt(sos, got, zi[None, :, :] * got[:, :1, None])
    except Exception:  # pragma: no cover - a changed private signature
        return None
    return _sosfilt if np.array_equal(got, expected) else None


_sosfilt_rows = _load_sosfilt_kernel()
