from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from features import RR_FEATURE_NAMES, FeatureError, WindowFeatures, extract

FS_HZ = 250.0
WINDOW = 2500
IRREGULARITY = ("cv_rr", "rmssd_norm", "pnn50", "madsd_norm", "sampen", "sd1_norm", "drr_hist_entropy_bits")


def _column(vectors: list[np.ndarray], name: str) -> np.ndarray:
    return np.array([v[RR_FEATURE_NAMES.index(name)] for v in vectors])


def _windows(mitdb: Callable, record: str, rhythm: str, limit: int) -> list[WindowFeatures]:
    """Quality-ok 10-s windows lying entirely inside one rhythm episode."""
    rec = mitdb(record)
    out = []
    for start in range(0, rec.signal_mv.shape[1] - WINDOW + 1, WINDOW):
        if rec.rhythm_at(start, start + WINDOW) == {rhythm}:
            features = extract(rec.signal_mv[:, start : start + WINDOW], FS_HZ)
            if features.quality.ok:
                out.append(features)
        if len(out) == limit:
            break
    return out


def test_clean_two_lead_window(mitdb: Callable) -> None:
    rec = mitdb("100")
    window = rec.signal_mv[:, 20 * WINDOW : 21 * WINDOW]
    features = extract(window, FS_HZ)
    assert features.quality.ok and features.quality.reason is None
    assert features.r_peaks.dtype == np.int64
    assert features.rr_s.shape == (features.r_peaks.size - 1,)
    assert features.rr_vector.dtype == np.float32
    assert features.rr_vector.shape == (len(RR_FEATURE_NAMES),)
    beats = rec.beats[(rec.beats >= 20 * WINDOW) & (rec.beats < 21 * WINDOW)]
    annotated_bpm = 60.0 * FS_HZ / float(np.median(np.diff(beats)))
    assert features.heart_rate_bpm == pytest.approx(annotated_bpm, rel=0.03)
    assert abs(features.r_peaks.size - beats.size) <= 1


def test_af_windows_are_more_irregular_than_sinus_rhythm(mitdb: Callable) -> None:
    sinus = [f.rr_vector for f in _windows(mitdb, "100", "(N", 40)]
    af = [f.rr_vector for rec in ("201", "203") for f in _windows(mitdb, rec, "(AFIB", 20)]
    assert len(sinus) == 40 and len(af) == 40
    for name in IRREGULARITY:
        sinus_values = _column(sinus, name)
        af_values = _column(af, name)
        assert np.median(af_values) > 2.0 * np.median(sinus_values) + 1e-3, name
        assert np.percentile(af_values, 25) > np.percentile(sinus_values, 75), name


def test_uses_the_good_lead_when_the_other_is_off(mitdb: Callable) -> None:
    window = mitdb("100").signal_mv[:, :WINDOW].copy()
    window[0] = 0.0
    features = extract(window, FS_HZ)
    assert features.quality.ok
    assert features.r_peaks.size >= 8


def test_bad_window_still_has_a_finite_vector() -> None:
    features = extract(np.zeros((2, WINDOW), dtype=np.float32), FS_HZ)
    assert features.quality.reason == "flat-line"
    assert features.heart_rate_bpm is None
    assert features.r_peaks.size == 0
    assert np.all(np.isfinite(features.rr_vector))


def test_noise_window_has_a_finite_vector() -> None:
    noise = np.random.default_rng(3).standard_normal((1, WINDOW)).astype(np.float32)
    features = extract(noise, FS_HZ)
    assert not features.quality.ok
    assert np.all(np.isfinite(features.rr_vector))


def test_single_lead_cinc_window(cinc: Callable) -> None:
    x = cinc("A00002")
    features = extract(x[:, :WINDOW], FS_HZ)
    assert features.quality.ok
    assert features.heart_rate_bpm is not None and 40 < features.heart_rate_bpm < 140


@pytest.mark.parametrize(
    ("signal", "fs_hz", "message"),
    [
        (np.zeros(WINDOW, dtype=np.float32), FS_HZ, "n_leads, n_samples"),
        (np.zeros((1, 2, WINDOW), dtype=np.float32), FS_HZ, "n_leads, n_samples"),
        (np.zeros((0, WINDOW), dtype=np.float32), FS_HZ, "n_leads, n_samples"),
        (np.zeros((2, 100), dtype=np.float32), FS_HZ, "shorter than"),
        (np.zeros((2, WINDOW), dtype=np.float32), 50.0, "sample rate"),
        (np.full((2, WINDOW), np.nan, dtype=np.float32), FS_HZ, "non-finite"),
        (np.zeros((2, WINDOW), dtype=np.complex64), FS_HZ, "real-valued"),
    ],
)
def test_bad_input_raises(signal: np.ndarray, fs_hz: float, message: str) -> None:
    with pytest.raises(FeatureError, match=message):
        extract(signal, fs_hz)
