from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from features import QUALITY_REASONS, FeatureError, QualityReport, assess_quality, bandpass, detect_qrs

FS_HZ = 250.0
WINDOW = 2500


@pytest.fixture(scope="module")
def clean_lead(mitdb: Callable) -> np.ndarray:
    return mitdb("100").signal_mv[0, 10 * WINDOW : 11 * WINDOW].astype(np.float64)


def test_clean_window_is_ok(clean_lead: np.ndarray) -> None:
    report = assess_quality(clean_lead, FS_HZ)
    assert report == QualityReport(ok=True, reason=None, sqi=report.sqi)
    assert report.sqi > 0.8


@pytest.mark.parametrize("level_mv", [0.0, -1.3])
def test_lead_off_is_flat_line(level_mv: float) -> None:
    rng = np.random.default_rng(0)
    lead = level_mv + 0.002 * rng.standard_normal(WINDOW)
    assert assess_quality(lead, FS_HZ) == QualityReport(ok=False, reason="flat-line", sqi=0.0)


def test_lead_dropping_out_for_most_of_the_window_is_flat_line(clean_lead: np.ndarray) -> None:
    lead = clean_lead.copy()
    lead[3 * 250 :] = lead[3 * 250]
    assert assess_quality(lead, FS_HZ).reason == "flat-line"


def test_clipped_window_is_saturation(clean_lead: np.ndarray) -> None:
    lo, hi = np.percentile(clean_lead, [2, 97])
    report = assess_quality(np.clip(clean_lead, lo, hi), FS_HZ)
    assert (report.ok, report.reason) == (False, "saturation")


def test_white_noise_is_noise() -> None:
    noise = 0.5 * np.random.default_rng(1).standard_normal(WINDOW)
    report = assess_quality(noise, FS_HZ)
    assert (report.ok, report.reason) == (False, "noise")
    assert report.sqi < 0.2


def test_heavy_emg_on_a_real_window_is_noise(clean_lead: np.ndarray) -> None:
    emg = 1.0 * np.random.default_rng(2).standard_normal(WINDOW)
    assert assess_quality(clean_lead + emg, FS_HZ).reason == "noise"


def test_implausible_amplitude_is_noise(clean_lead: np.ndarray) -> None:
    assert assess_quality(20.0 * clean_lead, FS_HZ).reason == "noise"


def test_too_few_beats(clean_lead: np.ndarray) -> None:
    peaks = detect_qrs(bandpass(clean_lead, FS_HZ), FS_HZ)
    assert assess_quality(clean_lead, FS_HZ, r_peaks=peaks[:3]).reason == "too-few-beats"


def test_gap_between_beats_is_non_physiological_rr(clean_lead: np.ndarray) -> None:
    peaks = detect_qrs(bandpass(clean_lead, FS_HZ), FS_HZ)
    keep = np.concatenate([peaks[:3], peaks[peaks > peaks[2] + 3.2 * FS_HZ]])
    assert assess_quality(clean_lead, FS_HZ, r_peaks=keep).reason == "non-physiological-rr"


def test_real_sinus_pauses_are_flagged(mitdb: Callable) -> None:
    rec = mitdb("232")
    long_rr = rec.beats[1:][np.diff(rec.beats) > 3.0 * FS_HZ]
    flagged = []
    for start in range(0, rec.signal_mv.shape[1] - WINDOW + 1, WINDOW):
        report = assess_quality(rec.signal_mv[0, start : start + WINDOW], FS_HZ)
        if report.reason == "non-physiological-rr":
            flagged.append(start)
    assert flagged, "record 232 has pauses over 3 s; some windows must be flagged"
    for start in flagged:
        assert np.any((long_rr > start) & (long_rr < start + WINDOW + 3 * FS_HZ))


def test_noisy_cinc_records_fail_more_often_than_normal_ones(cinc: Callable, cinc_labels: dict[str, str]) -> None:
    def failure_rate(label: str) -> float:
        names = [name for name, lab in cinc_labels.items() if lab == label][:60]
        verdicts = []
        for name in names:
            x = cinc(name)[0]
            verdicts += [assess_quality(x[s : s + WINDOW], FS_HZ).ok for s in range(0, x.size - WINDOW + 1, WINDOW)]
        return 1.0 - float(np.mean(verdicts))

    assert failure_rate("~") > 0.1
    assert failure_rate("N") < 0.03


def test_reasons_are_the_documented_tags() -> None:
    assert QUALITY_REASONS == ("flat-line", "saturation", "noise", "too-few-beats", "non-physiological-rr")


def test_bad_input_raises() -> None:
    with pytest.raises(FeatureError, match="one lead"):
        assess_quality(np.zeros((2, WINDOW)), FS_HZ)
    with pytest.raises(FeatureError, match="non-finite"):
        assess_quality(np.full(WINDOW, np.nan), FS_HZ)
