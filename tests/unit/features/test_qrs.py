from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from features import FeatureError, bandpass, detect_qrs

FS_HZ = 250.0
WINDOW = 2500
TOLERANCE = round(0.150 * FS_HZ)


def _detect_record(signal: np.ndarray) -> np.ndarray:
    """Detect window by window (10 s, as the stream does) on lead 0."""
    peaks = [
        detect_qrs(bandpass(signal[0, s : s + WINDOW], FS_HZ), FS_HZ) + s
        for s in range(0, signal.shape[1] - WINDOW + 1, WINDOW)
    ]
    return np.concatenate(peaks)


def _match(reference: np.ndarray, detected: np.ndarray) -> tuple[int, int, int]:
    """Greedy one-to-one matching within the tolerance: (true positives, false negatives, false positives)."""
    used = np.zeros(detected.size, dtype=bool)
    tp = 0
    for ref in reference:
        j = int(np.searchsorted(detected, ref))
        options = [k for k in (j - 1, j) if 0 <= k < detected.size and not used[k]]
        options = [k for k in options if abs(int(detected[k]) - int(ref)) <= TOLERANCE]
        if options:
            used[min(options, key=lambda k: abs(int(detected[k]) - int(ref)))] = True
            tp += 1
    return tp, reference.size - tp, int((~used).sum())


@pytest.mark.parametrize(
    ("record", "minimum"),
    [("100", 0.99), ("103", 0.99), ("117", 0.99), ("201", 0.95), ("203", 0.95), ("221", 0.95)],
)
def test_sensitivity_and_ppv_on_mitdb(mitdb: Callable, record: str, minimum: float) -> None:
    rec = mitdb(record)
    detected = _detect_record(rec.signal_mv)
    end = (rec.signal_mv.shape[1] // WINDOW) * WINDOW
    tp, fn, fp = _match(rec.beats[rec.beats < end], detected)
    sensitivity = tp / (tp + fn)
    ppv = tp / (tp + fp)
    assert sensitivity >= minimum, f"{record}: sensitivity {sensitivity:.4f}"
    assert ppv >= minimum, f"{record}: PPV {ppv:.4f}"


def test_r_peaks_sit_on_the_annotated_beats(mitdb: Callable) -> None:
    rec = mitdb("100")
    detected = _detect_record(rec.signal_mv[:, : 60 * WINDOW])
    ref = rec.beats[rec.beats < 60 * WINDOW]
    nearest = ref[np.clip(np.searchsorted(ref, detected), 0, ref.size - 1)]
    previous = ref[np.clip(np.searchsorted(ref, detected) - 1, 0, ref.size - 1)]
    offset_s = np.minimum(np.abs(detected - nearest), np.abs(detected - previous)) / FS_HZ
    assert float(np.median(offset_s)) <= 0.02


def test_works_on_inverted_and_raw_leads(mitdb: Callable) -> None:
    window = mitdb("117").signal_mv[0, :WINDOW].astype(np.float64)
    upright = detect_qrs(bandpass(window, FS_HZ), FS_HZ)
    inverted = detect_qrs(-window, FS_HZ)
    assert upright.size == inverted.size
    assert np.max(np.abs(upright - inverted)) <= round(0.06 * FS_HZ)


def test_indices_are_sorted_ints_respecting_the_refractory_period(mitdb: Callable) -> None:
    peaks = detect_qrs(mitdb("203").signal_mv[0, :WINDOW], FS_HZ)
    assert peaks.dtype == np.int64
    assert np.all(np.diff(peaks) >= round(0.2 * FS_HZ))
    assert peaks.min() >= 0 and peaks.max() < WINDOW


def test_flat_lead_has_no_beats() -> None:
    assert detect_qrs(np.zeros(WINDOW), FS_HZ).size == 0


def test_two_dimensional_input_raises() -> None:
    with pytest.raises(FeatureError, match="one lead"):
        detect_qrs(np.zeros((2, WINDOW)), FS_HZ)
