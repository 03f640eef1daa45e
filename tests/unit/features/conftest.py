"""Real PhysioNet records for the feature tests, resampled to the service rate of 250 Hz.

``data_dir`` (``HOLMES_DATA_DIR``, default ``../shared/data``; skips when absent) comes from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

wfdb = pytest.importorskip("wfdb")

FS_HZ = 250.0
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")


@dataclass(frozen=True)
class MitdbRecord:
    name: str
    signal_mv: np.ndarray
    beats: np.ndarray
    rhythm_starts: np.ndarray
    rhythms: tuple[str, ...]

    def rhythm_at(self, start: int, stop: int) -> set[str]:
        """Rhythm labels covering samples [start, stop)."""
        first = max(int(np.searchsorted(self.rhythm_starts, start, side="right")) - 1, 0)
        last = max(int(np.searchsorted(self.rhythm_starts, stop - 1, side="right")) - 1, 0)
        return set(self.rhythms[first : last + 1])


@lru_cache(maxsize=16)
def _load_mitdb(root: str, name: str) -> MitdbRecord:
    path = str(Path(root) / "mitdb" / name)
    record = wfdb.rdrecord(path)
    ann = wfdb.rdann(path, "atr")
    signal = resample_poly(record.p_signal.T, 25, 36, axis=1).astype(np.float32)
    scale = FS_HZ / record.fs
    samples = np.asarray(ann.sample)
    beats = np.round(samples[[s in BEAT_SYMBOLS for s in ann.symbol]] * scale).astype(np.int64)
    marks = [(int(round(s * scale)), note.strip("\x00")) for s, note in zip(samples, ann.aux_note, strict=True)]
    marks = [(s, note) for s, note in marks if note.startswith("(")]
    return MitdbRecord(
        name=name,
        signal_mv=signal,
        beats=beats,
        rhythm_starts=np.array([s for s, _ in marks], dtype=np.int64),
        rhythms=tuple(note for _, note in marks),
    )


@pytest.fixture(scope="session")
def mitdb(data_dir: Path) -> Callable[[str], MitdbRecord]:
    """Factory: MIT-BIH record by name at 250 Hz, with beat positions and rhythm marks in 250 Hz samples."""
    return lambda name: _load_mitdb(str(data_dir), name)


@pytest.fixture(scope="session")
def cinc(data_dir: Path) -> Callable[[str], np.ndarray]:
    """Factory: CinC 2017 record by name as a (1, n) float32 mV array at 250 Hz."""

    def load(name: str) -> np.ndarray:
        record = wfdb.rdrecord(str(data_dir / "cinc2017" / name))
        return resample_poly(record.p_signal.T, 5, 6, axis=1).astype(np.float32)

    return load


@pytest.fixture(scope="session")
def cinc_labels(data_dir: Path) -> dict[str, str]:
    lines = (data_dir / "cinc2017" / "REFERENCE.csv").read_text().splitlines()
    pairs = (line.split(",") for line in lines if line and not line.startswith("record"))
    return dict(pairs)
