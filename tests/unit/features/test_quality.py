from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pytest

from features import QUALITY_REASONS, FeatureError, QualityReport, assess_quality, bandpass, detect_qrs, extract
from features.bench import synthetic_ecg
from features.quality import TEMPLATE_MATCH_MIN, template_match

FS_HZ = 250.0
WINDOW = 2500
HALF_WIDTH = round(0.15 * FS_HZ)
MAX_LAG = round(0.08 * FS_HZ)


def _fitting_split(name: str) -> bool:
    """True for CinC training and validation records (the rule of ``models.splits.cinc_split``): the gate's
    threshold was fitted on those; test-split records stay out of these tests as they are the held-out figures."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % 100 < 85


def _record_scorable(signal_mv: np.ndarray) -> bool:
    """A record is scorable when one of its windows passes the gate, cut as ``models.evaluate`` cuts them:
    10-s windows ending on a 10-s grid, a record shorter than a window zero-padded at the start."""
    n = signal_mv.shape[1]
    ends = list(range(WINDOW, n + 1, WINDOW)) or [n]
    windows = (np.pad(signal_mv[:, max(e - WINDOW, 0) : e], ((0, 0), (max(WINDOW - e, 0), 0))) for e in ends)
    return any(extract(w, FS_HZ).quality.ok for w in windows)


def _unscorable_fraction(cinc: Callable, cinc_labels: dict[str, str], label: str, stride: int = 1) -> float:
    names = [n for n, lab in cinc_labels.items() if lab == label and _fitting_split(n)][::stride]
    return 1.0 - float(np.mean([_record_scorable(cinc(n)) for n in names]))


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


def test_noisy_cinc_windows_fail_far_more_often_than_normal_ones(cinc: Callable, cinc_labels: dict[str, str]) -> None:
    def failure_rate(label: str) -> float:
        names = [name for name, lab in cinc_labels.items() if lab == label][:60]
        verdicts = []
        for name in names:
            x = cinc(name)[0]
            verdicts += [assess_quality(x[s : s + WINDOW], FS_HZ).ok for s in range(0, x.size - WINDOW + 1, WINDOW)]
        return 1.0 - float(np.mean(verdicts))

    # Window by window, some N windows fail too (0.095 here, 0.02 before the template check): CinC labels
    # whole recordings, and many N recordings carry motion bursts. The record-level tests below pin what counts.
    assert failure_rate("~") > 0.8
    assert failure_rate("N") < 0.15


def test_noisy_cinc_records_are_unscorable(cinc: Callable, cinc_labels: dict[str, str]) -> None:
    assert _unscorable_fraction(cinc, cinc_labels, "~") >= 0.75  # 104 of 128 records (11 before)


def test_af_records_stay_scorable(cinc: Callable, cinc_labels: dict[str, str]) -> None:
    # The trap: AF's irregular rhythm must not read as noise. 5 of 298 records lost (noisy ones).
    assert _unscorable_fraction(cinc, cinc_labels, "A") <= 0.03


@pytest.mark.parametrize("label", ["N", "O"])
def test_normal_and_other_rhythm_records_stay_scorable(cinc: Callable, cinc_labels: dict[str, str], label: str) -> None:
    assert _unscorable_fraction(cinc, cinc_labels, label, stride=4) <= 0.05  # N 13 of 502, O 8 of 249


@pytest.mark.parametrize("record", ["102", "200", "201"])
def test_paced_ectopic_and_af_mitdb_windows_stay_scorable(mitdb: Callable, record: str) -> None:
    # 102 paced (detector fiducials jump between Q, R and S), 200 ventricular bigeminy, 201 AF: the
    # alignment and the second template keep them; at most 1 % of their 10-s two-lead windows fail.
    signal = mitdb(record).signal_mv
    starts = range(0, signal.shape[1] - WINDOW + 1, WINDOW)
    failed = [not extract(signal[:, s : s + WINDOW], FS_HZ).quality.ok for s in starts]
    assert np.mean(failed) <= 0.015


def _beats(r_times_s: np.ndarray, n: int, shapes: list[tuple[tuple[float, float, float], ...]]) -> np.ndarray:
    """Sum of Gaussian waves (offset s, amplitude mV, width s) per beat, beat i taking shape i % len(shapes)."""
    t = np.arange(n) / FS_HZ
    lead = np.zeros(n)
    for i, r in enumerate(r_times_s):
        for offset, amplitude, width in shapes[i % len(shapes)]:
            lead += amplitude * np.exp(-0.5 * ((t - r - offset) / width) ** 2)
    return bandpass(lead, FS_HZ)


SINUS = ((-0.2, 0.15, 0.025), (0.0, 1.2, 0.012), (0.03, -0.25, 0.01), (0.3, 0.3, 0.045))
VENTRICULAR = ((0.0, -1.5, 0.04), (0.25, 0.5, 0.06))
R_TIMES_S = np.arange(0.4, 9.7, 0.8)


def _peaks(r_times_s: np.ndarray) -> np.ndarray:
    return np.round(r_times_s * FS_HZ).astype(np.int64)


def test_template_match_of_identical_beats_is_one() -> None:
    lead = _beats(R_TIMES_S, WINDOW, [SINUS])
    assert template_match(lead, _peaks(R_TIMES_S), HALF_WIDTH, MAX_LAG) == pytest.approx(1.0, abs=1e-3)


def test_template_match_forgives_jittered_fiducials() -> None:
    lead = _beats(R_TIMES_S, WINDOW, [SINUS])
    jitter = np.random.default_rng(3).integers(-15, 16, R_TIMES_S.size)  # up to 60 ms off the R peak
    assert template_match(lead, _peaks(R_TIMES_S) + jitter, HALF_WIDTH, MAX_LAG) > 0.97


def test_template_match_ignores_rhythm() -> None:
    window = synthetic_ecg(irregular=True)[0].astype(np.float64)  # RR drawn uniformly in 0.4-1.1 s
    filtered = bandpass(window, FS_HZ)
    assert template_match(filtered, detect_qrs(filtered, FS_HZ), HALF_WIDTH, MAX_LAG) > 0.95


def test_template_match_keeps_a_repeating_second_morphology() -> None:
    lead = _beats(R_TIMES_S, WINDOW, [SINUS, SINUS, VENTRICULAR])  # ventricular trigeminy
    peaks = _peaks(R_TIMES_S)
    assert template_match(lead, peaks, HALF_WIDTH, MAX_LAG) > 0.95
    assert template_match(lead, peaks, HALF_WIDTH, MAX_LAG, enough=0.0) < TEMPLATE_MATCH_MIN  # one template only


def test_template_match_of_noise_is_low() -> None:
    noise = bandpass(np.random.default_rng(4).standard_normal(WINDOW), FS_HZ)
    assert template_match(noise, _peaks(R_TIMES_S), HALF_WIDTH, MAX_LAG) < 0.5


def test_template_match_needs_three_beats_clear_of_the_edges() -> None:
    lead = _beats(R_TIMES_S, WINDOW, [SINUS])
    assert template_match(lead, np.array([10, 700, 1400, 2490]), HALF_WIDTH, MAX_LAG) is None


def test_a_noisy_real_window_fails_the_template_check(cinc: Callable) -> None:
    x = cinc("A00125")[0, :WINDOW].astype(np.float64)  # '~' record
    report = assess_quality(x, FS_HZ)
    assert (report.ok, report.reason) == (False, "noise")


def test_reasons_are_the_documented_tags() -> None:
    assert QUALITY_REASONS == ("flat-line", "saturation", "noise", "too-few-beats", "non-physiological-rr")


def test_bad_input_raises() -> None:
    with pytest.raises(FeatureError, match="one lead"):
        assess_quality(np.zeros((2, WINDOW)), FS_HZ)
    with pytest.raises(FeatureError, match="non-finite"):
        assess_quality(np.full(WINDOW, np.nan), FS_HZ)
