"""``extract_batch`` returns what ``extract`` returns, window by window, to the last bit."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import features.window
from features import FeatureError, WindowFeatures, bandpass, extract, extract_batch
from features.bench import synthetic_ecg
from features.qrs import qrs_energy
from features.quality import signal_checks, signal_checks_rows
from features.window import BATCH_CHUNK

FS_HZ = 250.0
WINDOW = 2500
HOP = 1250

# 10-s windows at a 5-s hop: clean sinus (100), noisy stretches (105, 203), a lead that fails its beat checks
# while the other passes (108, 203: the fallback-lead path), AF with non-physiological RR (201, 203).
MITDB_SPANS = {
    "100": range(0, 40, 2),
    "105": range(230, 262),
    "108": range(0, 30),
    "201": range(68, 80),
    "203": range(0, 80),
}
CINC_RECORDS_PER_LABEL = 12


def _float_bits(value: float | None) -> bytes | None:
    return None if value is None else struct.pack("<d", value)


def _array_bits(array: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    return array.dtype.str, array.shape, array.tobytes()


def assert_identical(got: WindowFeatures, want: WindowFeatures, where: object) -> None:
    assert got.quality == want.quality, where
    assert _float_bits(got.quality.sqi) == _float_bits(want.quality.sqi), where
    assert _float_bits(got.heart_rate_bpm) == _float_bits(want.heart_rate_bpm), where
    for field in ("r_peaks", "rr_s", "rr_vector"):
        assert _array_bits(getattr(got, field)) == _array_bits(getattr(want, field)), (where, field)


@pytest.fixture(scope="module")
def real_windows(mitdb: Callable, cinc: Callable, cinc_labels: dict[str, str]) -> list[np.ndarray]:
    """A few hundred real windows of mixed shapes: two-lead, single-lead, three-lead, 10-s and 12-s MIT-BIH
    windows, and CinC 2017 windows and whole records (single lead, many lengths), noisy ``~`` ones included."""
    windows: list[np.ndarray] = []
    for name, span in MITDB_SPANS.items():
        x = mitdb(name).signal_mv
        windows += [x[:, i * HOP : i * HOP + WINDOW] for i in span]
    windows += [mitdb("203").signal_mv[1:, i * HOP : i * HOP + WINDOW] for i in range(0, 40)]
    windows += [mitdb("105").signal_mv[:1, i * HOP : i * HOP + WINDOW] for i in range(230, 250)]
    x108 = mitdb("108").signal_mv
    windows += [np.vstack((w, w[:1] - w[1:])) for w in (x108[:, i * HOP : i * HOP + WINDOW] for i in range(10))]
    windows += [mitdb("201").signal_mv[:, i * 3000 : (i + 1) * 3000] for i in range(10)]
    for label in ("~", "N", "A", "O"):
        names = sorted(n for n, lab in cinc_labels.items() if lab == label)[:CINC_RECORDS_PER_LABEL]
        for name in names:
            record = cinc(name)
            windows += [record[:, s : s + WINDOW] for s in range(0, record.shape[1] - WINDOW + 1, WINDOW)]
            windows.append(record)
    return windows


@pytest.fixture
def fallback_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts detections on a second-best lead (``extract`` runs ``detect_qrs`` only there)."""
    calls: list[int] = []
    detect = features.window.detect_qrs

    def counting(signal_mv: np.ndarray, fs_hz: float) -> np.ndarray:
        calls.append(1)
        return detect(signal_mv, fs_hz)

    monkeypatch.setattr(features.window, "detect_qrs", counting)
    yield calls


def test_batch_equals_extract_on_real_windows(real_windows: list[np.ndarray], fallback_calls: list[int]) -> None:
    order = np.random.default_rng(7).permutation(len(real_windows))
    windows = [real_windows[i] for i in order]  # shapes interleaved
    expected = [extract(w, FS_HZ) for w in windows]
    fallbacks = len(fallback_calls)
    got = extract_batch(windows, FS_HZ)
    assert len(got) == len(windows)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert_identical(g, e, (i, windows[i].shape))
    # What the windows cover: several shapes, both verdicts, several reasons, the fallback-lead path.
    assert len(windows) >= 400
    assert len({w.shape for w in windows}) >= 10
    assert len({w.shape[0] for w in windows}) == 3
    reasons = {f.quality.reason for f in expected}
    assert {None, "noise", "non-physiological-rr"} <= reasons
    assert sum(not f.quality.ok for f in expected) >= 30
    assert fallbacks > 0
    assert len(fallback_calls) == 2 * fallbacks  # the batch took the fallback path on the same windows


def test_batch_of_one_chunks_and_array_input(mitdb: Callable) -> None:
    x = mitdb("203").signal_mv
    n = 2 * BATCH_CHUNK + 3
    stack = np.stack([x[:, i * HOP : i * HOP + WINDOW] for i in range(n)])
    expected = [extract(w, FS_HZ) for w in stack]
    for i, (g, e) in enumerate(zip(extract_batch(stack, FS_HZ), expected, strict=True)):  # a 3-D array
        assert_identical(g, e, i)
    assert_identical(extract_batch([stack[5]], FS_HZ)[0], expected[5], "batch of one")
    assert_identical(extract_batch(list(stack[::-1]), FS_HZ)[-1], expected[0], "reversed")


def _synthetic_windows() -> list[np.ndarray]:
    ecg = synthetic_ecg(seed=1)
    lead_off = ecg.copy()
    lead_off[0] = 0.0
    rng = np.random.default_rng(3)
    return [
        np.zeros((2, WINDOW), dtype=np.float32),  # flat-line
        lead_off,
        np.clip(ecg, -0.2, 0.4),  # saturation
        rng.standard_normal((1, WINDOW)).astype(np.float32),  # noise
        (ecg * 200).astype(np.int16),  # integer samples
        np.asfortranarray(ecg.astype(np.float64)),  # not C-contiguous
        ecg[:, ::-1],  # negative strides
        ecg[:, :500],  # exactly 2 s: too few beats
        ecg * 20.0,  # amplitude out of range
        synthetic_ecg(irregular=True, seed=4),
        synthetic_ecg(seconds=30.0, n_leads=3, seed=5),
    ]


def test_batch_equals_extract_on_failing_and_odd_windows() -> None:
    windows = _synthetic_windows()
    expected = [extract(w, FS_HZ) for w in windows]
    assert {"flat-line", "saturation", "noise", "too-few-beats"} <= {f.quality.reason for f in expected}
    for i, (g, e) in enumerate(zip(extract_batch(windows, FS_HZ), expected, strict=True)):
        assert_identical(g, e, i)


def test_empty_batch() -> None:
    assert extract_batch([], FS_HZ) == []


@pytest.mark.parametrize(
    ("bad", "fs_hz", "message"),
    [
        (np.full((2, WINDOW), np.nan, dtype=np.float32), FS_HZ, "non-finite"),
        (np.zeros(WINDOW, dtype=np.float32), FS_HZ, "n_leads, n_samples"),
        (np.zeros((2, 100), dtype=np.float32), FS_HZ, "shorter than"),
        (np.zeros((2, WINDOW), dtype=np.complex64), FS_HZ, "real-valued"),
    ],
)
def test_bad_window_raises_naming_its_index(bad: np.ndarray, fs_hz: float, message: str) -> None:
    good = synthetic_ecg()
    with pytest.raises(FeatureError) as expected:
        extract(bad, fs_hz)
    with pytest.raises(FeatureError, match=message) as raised:
        extract_batch([good, good, bad, good], fs_hz)
    assert str(raised.value) == f"window 2: {expected.value}"


def test_bad_sample_rate_raises_for_the_first_window() -> None:
    with pytest.raises(FeatureError, match=r"^window 0: sample rate must be at least 100 Hz"):
        extract_batch([synthetic_ecg(), synthetic_ecg()], 50.0)


def test_stacked_building_blocks_are_row_independent(mitdb: Callable) -> None:
    x = mitdb("105").signal_mv.astype(np.float64)
    rows = np.stack([x[i % 2, i * HOP : i * HOP + WINDOW] for i in range(228, 252)])
    filtered = bandpass(rows, FS_HZ)
    for row, f in zip(rows, filtered, strict=True):
        assert _array_bits(f) == _array_bits(bandpass(row, FS_HZ))
    assert signal_checks_rows(rows, filtered, FS_HZ) == [
        signal_checks(r, f, FS_HZ) for r, f in zip(rows, filtered, strict=True)
    ]
    slope, energy = qrs_energy(filtered, FS_HZ)
    for i in range(rows.shape[0]):
        one_slope, one_energy = qrs_energy(filtered[i : i + 1], FS_HZ)
        assert _array_bits(slope[i : i + 1]) == _array_bits(one_slope)
        assert _array_bits(energy[i : i + 1]) == _array_bits(one_energy)
