from __future__ import annotations

import numpy as np
import pytest

from features import FeatureError, bandpass
from features.filters import bandpass_sos

FS_HZ = 250.0


def _tone(freq_hz: float, seconds: float = 10.0) -> np.ndarray:
    t = np.arange(int(seconds * FS_HZ)) / FS_HZ
    return np.sin(2 * np.pi * freq_hz * t)


def _gain(y: np.ndarray) -> float:
    core = y[500:-500]
    return float(np.sqrt(2 * np.mean(core**2)))


def test_passband_tone_is_kept_and_out_of_band_tones_are_removed() -> None:
    assert _gain(bandpass(_tone(10.0), FS_HZ)) == pytest.approx(1.0, abs=0.02)
    assert _gain(bandpass(_tone(0.05), FS_HZ)) < 0.02
    assert _gain(bandpass(_tone(100.0), FS_HZ)) < 0.01


def test_dc_offset_is_removed() -> None:
    y = bandpass(np.full(2500, 3.0) + _tone(10.0), FS_HZ)
    assert abs(float(y[500:-500].mean())) < 1e-3


def test_two_dimensional_input_filters_each_lead() -> None:
    x = np.stack([_tone(10.0), _tone(100.0)]).astype(np.float32)
    y = bandpass(x, FS_HZ)
    assert y.shape == x.shape
    np.testing.assert_allclose(y[0], bandpass(x[0], FS_HZ))
    assert _gain(y[1]) < 0.01


def test_sos_is_cached_per_sample_rate() -> None:
    assert bandpass_sos(250.0, 0.5, 40.0) is bandpass_sos(250.0, 0.5, 40.0)
    assert bandpass_sos(250.0, 0.5, 40.0) is not bandpass_sos(360.0, 0.5, 40.0)


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 100)), np.zeros(10)])
def test_bad_shapes_raise(bad: np.ndarray) -> None:
    with pytest.raises(FeatureError):
        bandpass(bad, FS_HZ)


def test_bad_sample_rate_raises() -> None:
    with pytest.raises(FeatureError, match="sample rate"):
        bandpass(np.zeros(2500), 0.0)
