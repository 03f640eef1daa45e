"""The band-pass with cached initial conditions is scipy's sosfiltfilt, to the last bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from features.filters import bandpass, bandpass_sos


@pytest.mark.parametrize("shape", [(2500,), (2, 2500), (1, 3000), (3, 200)])
@pytest.mark.parametrize(("fs_hz", "low_hz", "high_hz"), [(250.0, 0.5, 40.0), (250.0, 5.0, 15.0), (360.0, 0.5, 40.0)])
def test_bandpass_equals_sosfiltfilt(shape: tuple[int, ...], fs_hz: float, low_hz: float, high_hz: float) -> None:
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32).cumsum(axis=-1)
    expected = sps.sosfiltfilt(bandpass_sos(fs_hz, low_hz, high_hz, 2), x, axis=-1)
    assert np.array_equal(bandpass(x, fs_hz, low_hz, high_hz), expected)
