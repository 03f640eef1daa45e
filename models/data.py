"""Loaders for the PhysioNet training data: CinC 2017 records and windowed MIT-BIH records.

All signals come back in millivolts, float32, resampled to ``fs_hz`` (250 Hz by default, the bedside
stream rate). ``data_dir`` is the folder that holds ``cinc2017/`` and ``mitdb/``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import wfdb
from scipy.signal import resample_poly
from tqdm.auto import tqdm

from models.errors import ModelError

__all__ = [
    "AF_RHYTHMS",
    "CINC_LABELS",
    "CincLabel",
    "CincRecord",
    "MitdbRecord",
    "MitdbWindow",
    "cinc2017_labels",
    "load_cinc2017",
    "load_mitdb",
    "mitdb_record_names",
    "mitdb_windows",
    "read_mitdb_record",
    "resample",
]

CincLabel = Literal["N", "A", "O", "~"]
CINC_LABELS: tuple[CincLabel, ...] = ("N", "A", "O", "~")
AF_RHYTHMS = frozenset({"(AFIB", "(AFL"})


@dataclass(frozen=True, slots=True)
class CincRecord:
    """One CinC 2017 recording.

    Attributes
    ----------
    name : str
        Record name, e.g. ``"A00004"``.
    label : {"N", "A", "O", "~"}
        Reference label: normal, atrial fibrillation, other rhythm, too noisy.
    signal_mv : numpy.ndarray
        float32, shape ``(1, n_samples)``, millivolts at ``fs_hz``.
    fs_hz : float
        Sample rate in Hz.
    """

    name: str
    label: CincLabel
    signal_mv: np.ndarray
    fs_hz: float


@dataclass(frozen=True, slots=True)
class MitdbRecord:
    """One MIT-BIH record with its rhythm annotations.

    Attributes
    ----------
    name : str
        Record name, e.g. ``"201"``.
    signal_mv : numpy.ndarray
        float32, shape ``(2, n_samples)``, millivolts at ``fs_hz``.
    fs_hz : float
        Sample rate in Hz.
    rhythm_starts : numpy.ndarray
        Sample index (at ``fs_hz``) where each rhythm episode starts, int64, ascending; the first
        episode is taken to start at 0.
    rhythms : tuple of str
        Rhythm of each episode as annotated, e.g. ``"(AFIB"``, trailing NUL removed.
    """

    name: str
    signal_mv: np.ndarray
    fs_hz: float
    rhythm_starts: np.ndarray
    rhythms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MitdbWindow:
    """A window of an MIT-BIH record with its AF label.

    Attributes
    ----------
    record : str
        Record name.
    start_s : float
        Offset of the window in the record, in seconds.
    signal_mv : numpy.ndarray
        float32, shape ``(2, n_samples)``, millivolts at ``fs_hz``.
    fs_hz : float
        Sample rate in Hz.
    af_fraction : float
        Fraction of the window annotated ``(AFIB`` or ``(AFL``.
    af : bool
        ``af_fraction >= 0.5``.
    rhythms : tuple of str
        Distinct rhythms present in the window, in order of appearance.
    straddles_change : bool
        True when the rhythm changes inside the window; training drops these windows.
    """

    record: str
    start_s: float
    signal_mv: np.ndarray
    fs_hz: float
    af_fraction: float
    af: bool
    rhythms: tuple[str, ...]
    straddles_change: bool


def resample(signal: np.ndarray, fs_in_hz: float, fs_out_hz: float) -> np.ndarray:
    """Polyphase resampling along the last axis by the rational factor ``fs_out_hz / fs_in_hz``.

    Parameters
    ----------
    signal : numpy.ndarray
        Samples along the last axis.
    fs_in_hz, fs_out_hz : float
        Source and target sample rates in Hz (360 -> 250 Hz is up 25, down 36; 300 -> 250 Hz is 5, 6).

    Returns
    -------
    numpy.ndarray
        float32 resampled signal.
    """
    if fs_in_hz <= 0 or fs_out_hz <= 0:
        raise ModelError(f"sample rates must be positive, got {fs_in_hz} -> {fs_out_hz} Hz")
    ratio = Fraction(fs_out_hz / fs_in_hz).limit_denominator(1000)
    if ratio == 1:
        return np.asarray(signal, dtype=np.float32)
    out = resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1)
    return out.astype(np.float32)


def _require_dir(data_dir: Path | str, name: str) -> Path:
    path = Path(data_dir) / name
    if not path.is_dir():
        raise ModelError(f"{name} not found under {Path(data_dir).resolve()} (set HOLMES_DATA_DIR)")
    return path


def cinc2017_labels(data_dir: Path | str) -> dict[str, CincLabel]:
    """Reference labels of CinC 2017 from ``cinc2017/REFERENCE.csv``: record name -> N/A/O/~."""
    root = _require_dir(data_dir, "cinc2017")
    labels: dict[str, CincLabel] = {}
    with (root / "REFERENCE.csv").open(newline="") as handle:
        for row in csv.reader(handle):
            if len(row) != 2 or row[0] == "record":
                continue
            name, label = row
            if label not in CINC_LABELS:
                raise ModelError(f"unknown CinC 2017 label {label!r} for record {name}")
            labels[name] = label  # type: ignore[assignment]
    return labels


def load_cinc2017(
    data_dir: Path | str,
    fs_hz: float = 250.0,
    *,
    records: Iterable[str] | None = None,
    progress: bool = False,
) -> Iterator[CincRecord]:
    """Iterate over CinC 2017 records, resampled to ``fs_hz``.

    Parameters
    ----------
    data_dir : path
        Folder holding ``cinc2017/``.
    fs_hz : float
        Target sample rate in Hz.
    records : iterable of str, optional
        Record names to load, in this order; all records of ``REFERENCE.csv`` by default.
    progress : bool
        Show a tqdm progress bar.

    Yields
    ------
    CincRecord
    """
    root = _require_dir(data_dir, "cinc2017")
    labels = cinc2017_labels(data_dir)
    names = list(labels) if records is None else list(records)
    for name in tqdm(names, desc="cinc2017", unit="rec", disable=not progress):
        if name not in labels:
            raise ModelError(f"CinC 2017 record {name} is not in REFERENCE.csv")
        record = wfdb.rdrecord(str(root / name))
        signal = resample(record.p_signal.T, float(record.fs), fs_hz)
        yield CincRecord(name=name, label=labels[name], signal_mv=signal, fs_hz=fs_hz)


def mitdb_record_names(data_dir: Path | str) -> tuple[str, ...]:
    """Names of the MIT-BIH records present under ``data_dir/mitdb``, sorted."""
    root = _require_dir(data_dir, "mitdb")
    return tuple(sorted(path.stem for path in root.glob("*.hea")))


def load_mitdb(data_dir: Path | str, record: str, fs_hz: float = 250.0) -> MitdbRecord:
    """Load one MIT-BIH record and its rhythm annotations, resampled to ``fs_hz``."""
    root = _require_dir(data_dir, "mitdb")
    path = root / record
    if not path.with_suffix(".hea").is_file():
        raise ModelError(f"MIT-BIH record {record} not found under {root}")
    return read_mitdb_record(path, fs_hz)


def read_mitdb_record(path: Path | str, fs_hz: float = 250.0) -> MitdbRecord:
    """Read a MIT-BIH-format record (``.hea``/``.dat``/``.atr``) given its path without extension.

    Parameters
    ----------
    path : path
        Record path without extension, e.g. ``mitdb/201``.
    fs_hz : float
        Target sample rate in Hz.

    Returns
    -------
    MitdbRecord
        Signal in mV at ``fs_hz`` with the rhythm episodes of the ``.atr`` annotations.

    Raises
    ------
    ModelError
        When the annotations hold no rhythm change.
    """
    path = Path(path)
    raw = wfdb.rdrecord(str(path))
    ann = wfdb.rdann(str(path), "atr")
    signal = resample(raw.p_signal.T, float(raw.fs), fs_hz)
    scale = fs_hz / float(raw.fs)
    starts: list[int] = []
    rhythms: list[str] = []
    for sample, note in zip(ann.sample, ann.aux_note, strict=True):
        rhythm = (note or "").strip("\x00").strip()
        if not rhythm.startswith("("):
            continue
        if rhythms and rhythms[-1] == rhythm:
            continue
        starts.append(round(int(sample) * scale))
        rhythms.append(rhythm)
    if not rhythms:
        raise ModelError(f"MIT-BIH record {path.name} has no rhythm annotations")
    starts[0] = 0
    return MitdbRecord(
        name=path.name,
        signal_mv=signal,
        fs_hz=fs_hz,
        rhythm_starts=np.asarray(starts, dtype=np.int64),
        rhythms=tuple(rhythms),
    )


def mitdb_windows(
    data_dir: Path | str,
    record: str,
    window_s: float,
    hop_s: float,
    fs_hz: float = 250.0,
) -> list[MitdbWindow]:
    """Cut one MIT-BIH record into windows labelled AF (``(AFIB`` or ``(AFL``) or not.

    Parameters
    ----------
    data_dir : path
        Folder holding ``mitdb/``.
    record : str
        Record name, e.g. ``"201"``.
    window_s, hop_s : float
        Window length and hop in seconds.
    fs_hz : float
        Target sample rate in Hz.

    Returns
    -------
    list of MitdbWindow
        Windows in time order; windows whose rhythm changes inside are kept and flagged with
        ``straddles_change``.
    """
    if window_s <= 0 or hop_s <= 0:
        raise ModelError(f"window_s and hop_s must be positive, got {window_s}, {hop_s}")
    rec = load_mitdb(data_dir, record, fs_hz)
    width = round(window_s * fs_hz)
    hop = round(hop_s * fs_hz)
    n = rec.signal_mv.shape[1]
    bounds = np.append(rec.rhythm_starts, n)
    is_af = np.array([rhythm in AF_RHYTHMS for rhythm in rec.rhythms])
    windows: list[MitdbWindow] = []
    for start in range(0, n - width + 1, hop):
        stop = start + width
        overlap = np.clip(np.minimum(bounds[1:], stop) - np.maximum(bounds[:-1], start), 0, None)
        present = np.flatnonzero(overlap > 0)
        af_fraction = float(overlap[is_af].sum()) / width
        windows.append(
            MitdbWindow(
                record=record,
                start_s=start / fs_hz,
                signal_mv=rec.signal_mv[:, start:stop],
                fs_hz=fs_hz,
                af_fraction=af_fraction,
                af=af_fraction >= 0.5,
                rhythms=tuple(rec.rhythms[i] for i in present),
                straddles_change=present.size > 1,
            )
        )
    return windows
