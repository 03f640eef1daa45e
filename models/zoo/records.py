"""Per-model records: per-window validation and test predictions, the metrics computed from them, and
fixed validation batches for backtests.

A predictions file (``<stem>.npz`` next to the card, ``numpy.load(..., allow_pickle=False)``) holds one
row per scored window and these arrays:

========== ======= ==========================================================================
field      dtype   meaning
========== ======= ==========================================================================
dataset    str     ``"cinc"`` or ``"mitdb"``
split      str     ``"val"`` or ``"test"``
record     str     record name; the window id is ``(dataset, record, start)``
start      int64   first sample at 250 Hz (negative: zero-padded start of a short CinC record)
end        int64   end sample (exclusive); a 10-s and a 30-s window with equal ``end`` are the same moment
label      int8    1 = AF/flutter
probability float32 calibrated probability
logit      float32 uncalibrated logit (``probability = sigmoid(logit / temperature)``)
========== ======= ==========================================================================

Windows are those of :mod:`models.windows` (10-s end grid, quality-ok, MIT-BIH single-rhythm) that the
model's contract can read: one-lead and RR models are scored on both data sets, two-lead models on
MIT-BIH only. So any subset of models can be scored later by joining on ``(dataset, record, end)``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from models.card import InputContract
from models.errors import ModelError
from models.zoo.served import ModelBatch

__all__ = ["Predictions", "metrics_by_split", "read_predictions", "validation_batch", "write_predictions"]


@dataclass(frozen=True, slots=True)
class Predictions:
    """The arrays of a predictions file (see the module docstring)."""

    dataset: np.ndarray
    split: np.ndarray
    record: np.ndarray
    start: np.ndarray
    end: np.ndarray
    label: np.ndarray
    probability: np.ndarray
    logit: np.ndarray

    def __len__(self) -> int:
        return int(self.label.size)

    def mask(self, split: str | None = None, dataset: str | None = None) -> np.ndarray:
        """Rows of a split and/or data set."""
        m = np.ones(len(self), dtype=bool)
        if split is not None:
            m &= self.split == split
        if dataset is not None:
            m &= self.dataset == dataset
        return m


def write_predictions(path: Path, predictions: Predictions) -> str:
    """Write a predictions file (compressed ``.npz``) and return its SHA-256."""
    arrays = {f.name: getattr(predictions, f.name) for f in fields(Predictions)}
    lengths = {a.shape[0] for a in arrays.values()}
    if len(lengths) != 1:
        raise ModelError(f"prediction arrays differ in length: {sorted(lengths)}")
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_predictions(path: Path, sha256: str | None = None) -> Predictions:
    """Read a predictions file, checking its SHA-256 when given."""
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read predictions {path}: {exc}") from exc
    if sha256 is not None and hashlib.sha256(blob).hexdigest() != sha256:
        raise ModelError(f"checksum of {path} does not match its model card")
    with np.load(path, allow_pickle=False) as data:
        try:
            return Predictions(**{f.name: data[f.name] for f in fields(Predictions)})
        except KeyError as exc:
            raise ModelError(f"{path} lacks the prediction field {exc}") from exc


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v) for k, v in values.items()}


def metrics_by_split(predictions: Predictions) -> dict[str, dict[str, Any]]:
    """Metrics per ``"<split>/<dataset>"`` (and ``"<split>/all"`` when both data sets are present).

    Returns
    -------
    dict
        ``{"val/cinc": {n, n_pos, roc_auc, pr_auc, sens_at_spec95, ece, brier}, ...}`` rounded to 4 decimals.
    """
    from models.evaluation import probability_metrics  # scikit-learn: imported on use

    out: dict[str, dict[str, Any]] = {}
    datasets = [d for d in ("cinc", "mitdb") if (predictions.dataset == d).any()]
    for split in ("val", "test"):
        groups: list[str | None] = list(datasets) + ([None] if len(datasets) > 1 else [])
        for dataset in groups:
            m = predictions.mask(split, dataset)
            if m.any():
                key = f"{split}/{dataset or 'all'}"
                out[key] = _rounded(probability_metrics(predictions.probability[m], predictions.label[m]))
    return out


def validation_batch(
    data_dir: Path,
    contract: InputContract,
    limit: int | None = None,
    *,
    dataset: str = "mitdb",
    cache_dir: Path | None = None,
) -> tuple[ModelBatch, np.ndarray]:
    """Fixed validation windows and their labels, for backtests.

    The windows are the validation windows of :mod:`models.windows` (10-s end grid, quality-ok,
    single-rhythm) of the contract's window length, with every lead the data set has (MIT-BIH: 2, as the
    bedside stream delivers them; CinC: 1), and their RR vectors. They are cut from the on-disk window
    cache (``~/.cache/holmes``), built on first use.

    Parameters
    ----------
    data_dir : pathlib.Path
        Folder holding ``cinc2017/`` and ``mitdb/``.
    contract : InputContract
        Only ``window_s`` matters (and ``leads``: a two-lead contract needs ``dataset="mitdb"``).
    limit : int, optional
        At most this many windows, evenly spaced over the (record-ordered) validation windows.
    dataset : {"mitdb", "cinc"}
        Which data set's validation split.
    cache_dir : pathlib.Path, optional
        Cache root (default ``~/.cache/holmes``).

    Returns
    -------
    (ModelBatch, numpy.ndarray)
        The batch and the int8 AF labels, shape ``(B,)``.
    """
    from models.windows import load_tables

    if dataset not in ("mitdb", "cinc"):
        raise ModelError(f"dataset must be 'mitdb' or 'cinc', got {dataset!r}")
    window_s = int(round(contract.window_s))
    store, tables = load_tables(data_dir, dataset, progress=False, cache_dir=cache_dir)  # type: ignore[arg-type]
    if window_s not in tables:
        raise ModelError(f"no {window_s}-s windows; the zoo uses {sorted(tables)}")
    if contract.leads > store.n_leads:
        raise ModelError(f"{dataset} has {store.n_leads} lead(s), the contract needs {contract.leads}")
    table = tables[window_s]
    idx = np.flatnonzero(table.usable("val"))
    if limit is not None and limit < idx.size:
        idx = idx[np.unique(np.linspace(0, idx.size - 1, max(limit, 1)).round().astype(np.int64))]
    waves = store.windows(table.row[idx], table.start[idx], window_s * 250)
    return ModelBatch(waves, np.ascontiguousarray(table.rr[idx])), table.label[idx].copy()
