"""Cached window tables of both data sets: where every window lies, its label, quality verdict and RR vector.

The zoo trains and evaluates every model on the same windows, so that the per-window predictions of any
two models can be joined (the ensemble selector scores subsets of models on them). The grid:

- Validation and test windows end on a 10-s grid (window ends at 10 s, 20 s, ... of the record), so a
  30-s window and the 10-s window ending at the same sample are the stream's view of the same moment
  (the worker hands a model the *last* ``window_s`` seconds). 10-s windows are therefore
  non-overlapping, 30-s windows overlap by 20 s.
- Training-split windows end on a 5-s grid instead (more, overlapping windows: cheap augmentation).
- A CinC record shorter than a window gives a single window ending at the record's last sample,
  zero-padded at its start (``start < 0``), as for a bed whose stream began less than ``window_s``
  ago. The quality gate and the RR vector use the real samples only.
- MIT-BIH windows that straddle a rhythm change are flagged (``straddles``); neither training nor the
  reported metrics use them. CinC ``~`` records are left out (no AF label): they are the quality
  gate's business, see :mod:`models.evaluate`.

Signals are kept once per data set as one flat float32 array per lead (``signal[:, offset + i]`` is
sample ``i`` of a record at 250 Hz, mV) with :data:`PAD_SAMPLES` zeros before every record, so a
window with a negative start reads zeros. Everything is cached as ``.npy`` files under
``$XDG_CACHE_HOME/holmes`` (default ``~/.cache/holmes``), keyed by the data folder, this module's
grid constants and the source of :mod:`features`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

import features
from features import RR_FEATURE_NAMES, FeatureError
from models.data import cinc2017_labels, load_cinc2017, load_mitdb, mitdb_record_names
from models.errors import ModelError
from models.splits import cinc_split, mitdb_split

__all__ = [
    "DATASETS",
    "EVAL_HOP_S",
    "FS_HZ",
    "PAD_SAMPLES",
    "TRAIN_HOP_S",
    "WINDOW_LENGTHS_S",
    "Dataset",
    "SignalStore",
    "WindowTable",
    "build_tables",
    "default_cache_dir",
    "load_tables",
    "window_ends",
]

Dataset = Literal["cinc", "mitdb"]
DATASETS: tuple[Dataset, ...] = ("cinc", "mitdb")
FS_HZ = 250
WINDOW_LENGTHS_S: tuple[int, ...] = (10, 30)
EVAL_HOP_S = 10
TRAIN_HOP_S = 5
PAD_SAMPLES = 30 * FS_HZ
_GRID_VERSION = "2"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/holmes`` (``~/.cache/holmes`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "holmes"


def window_ends(n_samples: int, width: int, hop: int) -> list[int]:
    """End samples (exclusive) of the windows of a record.

    Parameters
    ----------
    n_samples : int
        Record length in samples.
    width : int
        Window length in samples.
    hop : int
        Grid step in samples; ends are the multiples of ``hop`` in ``[width, n_samples]``.

    Returns
    -------
    list of int
        The grid ends, or ``[n_samples]`` (one zero-padded window) when the record is shorter than a
        window or no grid end fits.
    """
    first = -(-width // hop) * hop
    ends = list(range(first, n_samples + 1, hop))
    return ends or [n_samples]


@dataclass(frozen=True, slots=True)
class SignalStore:
    """Every record of one data set at 250 Hz in one array.

    Attributes
    ----------
    names : numpy.ndarray
        Record names, str.
    offsets : numpy.ndarray
        int64 column of each record's first sample in ``signal``.
    lengths : numpy.ndarray
        int64 record lengths in samples.
    signal : numpy.ndarray
        float32, shape ``(n_leads, total)``, millivolts; :data:`PAD_SAMPLES` zeros precede each record.
    """

    names: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    signal: np.ndarray

    @property
    def n_leads(self) -> int:
        return int(self.signal.shape[0])

    def index(self) -> dict[str, int]:
        """Record name -> row of ``names``."""
        return {str(n): i for i, n in enumerate(self.names)}

    def windows(self, rows: np.ndarray, starts: np.ndarray, width: int, leads: int | None = None) -> np.ndarray:
        """Gather windows as one array.

        Parameters
        ----------
        rows : numpy.ndarray
            Record row (into ``names``) of each window, int.
        starts : numpy.ndarray
            First sample of each window in its record; negative values read the zero padding.
        width : int
            Window length in samples.
        leads : int, optional
            Keep the first ``leads`` leads (all by default).

        Returns
        -------
        numpy.ndarray
            float32, shape ``(len(rows), leads, width)``, millivolts.
        """
        leads = self.n_leads if leads is None else leads
        base = self.offsets[np.asarray(rows)] + np.asarray(starts, dtype=np.int64)
        idx = base[:, None] + np.arange(width, dtype=np.int64)[None, :]
        return np.ascontiguousarray(np.moveaxis(self.signal[:leads, idx], 0, 1))


@dataclass(frozen=True, slots=True)
class WindowTable:
    """The windows of one data set at one window length, one row per window.

    Attributes
    ----------
    dataset : {"cinc", "mitdb"}
    window_s : int
        Window length in seconds.
    row : numpy.ndarray
        int32 record row into the data set's :class:`SignalStore`.
    record : numpy.ndarray
        Record name, str.
    start : numpy.ndarray
        int64 first sample at 250 Hz (negative: zero-padded start); the window id is ``(record, start)``.
    end : numpy.ndarray
        int64 end sample (exclusive); windows of two lengths with equal ``(record, end)`` are the same moment.
    split : numpy.ndarray
        ``"train"``, ``"val"`` or ``"test"``.
    grid : numpy.ndarray
        ``"train"`` (5-s grid: the training split) or ``"eval"`` (10-s grid: validation and test).
    label : numpy.ndarray
        int8: 1 for AF/flutter (CinC ``A``; MIT-BIH ``(AFIB``/``(AFL`` over at least half the window).
    ok : numpy.ndarray
        bool: the window passes the quality gate of :func:`features.extract`.
    straddles : numpy.ndarray
        bool: the rhythm changes inside the window (MIT-BIH).
    rr : numpy.ndarray
        float32, shape ``(n, len(RR_FEATURE_NAMES))``: ``features.extract(...).rr_vector``.
    """

    dataset: str
    window_s: int
    row: np.ndarray
    record: np.ndarray
    start: np.ndarray
    end: np.ndarray
    split: np.ndarray
    grid: np.ndarray
    label: np.ndarray
    ok: np.ndarray
    straddles: np.ndarray
    rr: np.ndarray

    def __len__(self) -> int:
        return int(self.row.size)

    def usable(self, split: str) -> np.ndarray:
        """Mask of the windows models train on (split ``"train"``) or are measured on (``"val"``, ``"test"``).

        Quality-ok, single-rhythm windows of the split.
        """
        return (self.split == split) & self.ok & ~self.straddles


def _cache_key(data_dir: Path) -> str:
    digest = hashlib.sha256()
    digest.update(
        f"{data_dir.resolve()}|{_GRID_VERSION}|{FS_HZ}|{WINDOW_LENGTHS_S}|{EVAL_HOP_S}|{TRAIN_HOP_S}".encode()
    )
    digest.update(f"{PAD_SAMPLES}|{RR_FEATURE_NAMES}".encode())
    for path in sorted(Path(features.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _gate(window_mv: np.ndarray) -> tuple[bool, np.ndarray]:
    try:
        result = features.extract(window_mv, float(FS_HZ))
    except FeatureError:
        return False, np.zeros(len(RR_FEATURE_NAMES), dtype=np.float32)
    return bool(result.quality.ok), result.rr_vector


def _build_store(
    dataset: Dataset, data_dir: Path, progress: bool, records: Sequence[str] | None = None
) -> tuple[SignalStore, list[str], list[np.ndarray]]:
    """Signal store plus, per record, its label source (CinC label letter or MIT-BIH rhythm episodes)."""
    chunks: list[np.ndarray] = []
    names: list[str] = []
    lengths: list[int] = []
    meta: list[np.ndarray] = []
    labels: list[str] = []
    if dataset == "cinc":
        reference = cinc2017_labels(data_dir)
        wanted = [n for n, lab in reference.items() if lab != "~" and (records is None or n in records)]
        for rec in load_cinc2017(data_dir, FS_HZ, records=wanted, progress=progress):
            names.append(rec.name)
            labels.append(rec.label)
            chunks.append(rec.signal_mv)
            lengths.append(rec.signal_mv.shape[1])
            meta.append(np.zeros((0, 2), dtype=np.int64))
    else:
        names_all = [n for n in mitdb_record_names(data_dir) if records is None or n in records]
        for name in tqdm(names_all, desc="mitdb", unit="rec", disable=not progress):
            rec = load_mitdb(data_dir, name, FS_HZ)
            names.append(name)
            labels.append("")
            chunks.append(rec.signal_mv)
            lengths.append(rec.signal_mv.shape[1])
            is_af = np.array([r in ("(AFIB", "(AFL") for r in rec.rhythms], dtype=np.int64)
            meta.append(np.stack([rec.rhythm_starts, is_af], axis=1))
    if not chunks:
        raise ModelError(f"no {dataset} records to window under {data_dir}")
    n_leads = chunks[0].shape[0]
    offsets = np.zeros(len(chunks), dtype=np.int64)
    total = 0
    for i, chunk in enumerate(chunks):
        if chunk.shape[0] != n_leads:
            raise ModelError(f"{dataset} record {names[i]} has {chunk.shape[0]} leads, expected {n_leads}")
        total += PAD_SAMPLES
        offsets[i] = total
        total += chunk.shape[1]
    signal = np.zeros((n_leads, total), dtype=np.float32)
    for off, chunk in zip(offsets, chunks, strict=True):
        signal[:, off : off + chunk.shape[1]] = chunk
    store = SignalStore(
        names=np.asarray(names, dtype=str),
        offsets=offsets,
        lengths=np.asarray(lengths, dtype=np.int64),
        signal=signal,
    )
    return store, labels, meta


def _build_table(
    dataset: Dataset, window_s: int, store: SignalStore, labels: list[str], meta: list[np.ndarray], progress: bool
) -> WindowTable:
    width = window_s * FS_HZ
    cols: dict[str, list[object]] = {f.name: [] for f in fields(WindowTable) if f.name not in ("dataset", "window_s")}
    for row, name in enumerate(
        tqdm(store.names, desc=f"{dataset} {window_s}s windows", unit="rec", disable=not progress)
    ):
        name = str(name)
        n = int(store.lengths[row])
        split = cinc_split(name) if dataset == "cinc" else mitdb_split(name)
        grid, hop_s = ("train", TRAIN_HOP_S) if split == "train" else ("eval", EVAL_HOP_S)
        for end in window_ends(n, width, hop_s * FS_HZ):
            start = end - width
            real = store.windows(np.array([row]), np.array([max(start, 0)]), end - max(start, 0))[0]
            ok, rr = _gate(real)
            if dataset == "cinc":
                label, straddles = int(labels[row] == "A"), False
            else:
                starts_af = meta[row]
                bounds = np.append(starts_af[:, 0], n)
                overlap = np.clip(np.minimum(bounds[1:], end) - np.maximum(bounds[:-1], start), 0, None)
                label = int(overlap[starts_af[:, 1] == 1].sum() * 2 >= width)
                straddles = int((overlap > 0).sum()) > 1
            for key, value in (
                ("row", row), ("record", name), ("start", start), ("end", end), ("split", split),
                ("grid", grid), ("label", label), ("ok", ok), ("straddles", straddles), ("rr", rr),
            ):  # fmt: skip
                cols[key].append(value)
    return WindowTable(
        dataset=dataset,
        window_s=window_s,
        row=np.asarray(cols["row"], dtype=np.int32),
        record=np.asarray(cols["record"], dtype=str),
        start=np.asarray(cols["start"], dtype=np.int64),
        end=np.asarray(cols["end"], dtype=np.int64),
        split=np.asarray(cols["split"], dtype=str),
        grid=np.asarray(cols["grid"], dtype=str),
        label=np.asarray(cols["label"], dtype=np.int8),
        ok=np.asarray(cols["ok"], dtype=bool),
        straddles=np.asarray(cols["straddles"], dtype=bool),
        rr=np.asarray(cols["rr"], dtype=np.float32).reshape(-1, len(RR_FEATURE_NAMES)),
    )


def build_tables(
    data_dir: Path | str,
    dataset: Dataset,
    *,
    records: Sequence[str] | None = None,
    progress: bool = False,
) -> tuple[SignalStore, dict[int, WindowTable]]:
    """Build (without caching) the signal store and the 10-s and 30-s window tables of one data set.

    Parameters
    ----------
    data_dir : path
        Folder holding ``cinc2017/`` and ``mitdb/``.
    dataset : {"cinc", "mitdb"}
    records : sequence of str, optional
        Only these records (all by default; CinC ``~`` records are always left out).
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    (SignalStore, dict)
        The store and ``{window_s: WindowTable}``.
    """
    store, labels, meta = _build_store(dataset, Path(data_dir), progress, records)
    tables = {w: _build_table(dataset, w, store, labels, meta, progress) for w in WINDOW_LENGTHS_S}
    return store, tables


_TABLE_ARRAYS = ("row", "record", "start", "end", "split", "grid", "label", "ok", "straddles", "rr")
_STORE_ARRAYS = ("names", "offsets", "lengths", "signal")


def _save(folder: Path, prefix: str, obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        tmp = folder / f"{prefix}.{name}.tmp.npy"
        np.save(tmp, getattr(obj, name), allow_pickle=False)
        tmp.replace(folder / f"{prefix}.{name}.npy")


def _load(folder: Path, prefix: str, names: tuple[str, ...], mmap: bool = False) -> dict[str, np.ndarray] | None:
    paths = {name: folder / f"{prefix}.{name}.npy" for name in names}
    if not all(p.is_file() for p in paths.values()):
        return None
    return {name: np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None) for name, p in paths.items()}


def load_tables(
    data_dir: Path | str,
    dataset: Dataset,
    *,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> tuple[SignalStore, dict[int, WindowTable]]:
    """Signal store and window tables (10 s and 30 s) of one data set, built once and cached on disk.

    Parameters
    ----------
    data_dir : path
        Folder holding ``cinc2017/`` and ``mitdb/``.
    dataset : {"cinc", "mitdb"}
    progress : bool
        Show tqdm progress bars while building.
    cache_dir : path, optional
        Cache root; ``$XDG_CACHE_HOME/holmes`` by default.

    Returns
    -------
    (SignalStore, dict)
        The store and ``{window_s: WindowTable}`` for 10 and 30 s.
    """
    data_dir = Path(data_dir)
    folder = (cache_dir or default_cache_dir()) / f"windows_{_cache_key(data_dir)}"
    folder.mkdir(parents=True, exist_ok=True)
    cached_store = _load(folder, f"{dataset}.store", _STORE_ARRAYS)
    if cached_store is None:
        store, labels, meta = _build_store(dataset, data_dir, progress)
    else:
        store = SignalStore(**cached_store)
        labels, meta = [], []
    tables: dict[int, WindowTable] = {}
    for window_s in WINDOW_LENGTHS_S:
        cached = _load(folder, f"{dataset}.w{window_s}", _TABLE_ARRAYS)
        if cached is None:
            if not labels:
                store, labels, meta = _build_store(dataset, data_dir, progress)
            table = _build_table(dataset, window_s, store, labels, meta, progress)
            _save(folder, f"{dataset}.w{window_s}", table, _TABLE_ARRAYS)
        else:
            table = WindowTable(dataset=dataset, window_s=window_s, **cached)
        tables[window_s] = table
    if cached_store is None:
        _save(folder, f"{dataset}.store", store, _STORE_ARRAYS)
    return store, tables
