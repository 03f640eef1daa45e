"""Score every record of a PhysioNet folder with the model that would be served, and report.

``holmes evaluate --data DIR [--format cinc2017|mitdb] [--beds N] --json PATH`` calls
:func:`evaluate_folder`. The procedure, per record:

1. Read it (WFDB), resample to 250 Hz, keep every lead (the stream's view: CinC one lead, MIT-BIH two).
2. Cut windows of the model's length whose ends lie on a 10-s grid (hop 10 s); a record shorter than
   the window gives one window ending at its last sample, zero-padded at the start.
3. Run the quality gate (:func:`features.extract`) on each window's real samples: failing windows are
   unscorable; the others get the model's calibrated probability (one batched call per record).
4. Record score: the mean of the ``k = 3`` highest window probabilities (all windows when fewer are
   scorable). Why: a CinC recording (median 30 s) is 3 windows, so its score is the mean over the whole
   recording; in a 30-min MIT-BIH record it asks for about 30 s of sustained AF, robust to one
   spurious window but sensitive to a paroxysm. A record with no scorable window is ``unscorable``.

Labels: CinC from ``REFERENCE.csv`` (``A`` positive, ``N``/``O`` negative, ``~`` counted apart: those
records must come out unscorable, and the report says how many do); MIT-BIH: a record is positive when
its ``.atr`` rhythm annotations contain ``(AFIB`` or ``(AFL``, and window-level metrics use the window's
annotated rhythm (AF over at least half the window; windows straddling a rhythm change left out).

Model: until the ensemble selector exists, :func:`models.zoo.select.best_single`: the best mean validation
ROC-AUC among the models the folder's leads can feed whose batch-1 latency fits the budget at ``beds``
beds. Metrics on the records of the fixed test split (:mod:`models.splits`) are reported apart, as
``held_out``: other records of the shared folders were used for training or selection.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import wfdb
from tqdm.auto import tqdm

import features
from features import FeatureError
from models.data import AF_RHYTHMS, read_mitdb_record, resample
from models.errors import ModelError
from models.evaluation import probability_metrics
from models.splits import cinc_split, mitdb_split
from models.windows import window_ends
from models.zoo.select import best_single, latency_budget_ms, validation_auc
from models.zoo.served import SERVING_FS_HZ, ModelBatch, ServedModel

__all__ = [
    "AGGREGATE_TOP_K",
    "HOP_S",
    "Format",
    "RecordScore",
    "aggregate",
    "evaluate_folder",
    "infer_format",
    "pick_model",
]

Format = Literal["cinc2017", "mitdb"]
HOP_S = 10
AGGREGATE_TOP_K = 3
_DATASET = {"cinc2017": "cinc", "mitdb": "mitdb"}


@dataclass(frozen=True, slots=True)
class RecordScore:
    """Outcome for one record.

    Attributes
    ----------
    record : str
    label : int or None
        1 AF, 0 not AF, None unlabelled (CinC ``~`` or no reference).
    reference : str
        The raw reference (CinC letter, or ``"AF"``/``"non-AF"`` for MIT-BIH).
    score : float or None
        Aggregated probability; None when unscorable.
    n_windows, n_scorable : int
        Windows cut and windows that passed the quality gate.
    window_probabilities : numpy.ndarray
        float32 probability of each scorable window.
    window_labels : numpy.ndarray
        int8 window labels (MIT-BIH: 1 AF, 0 not, -1 straddling or unknown; CinC: the record label or -1).
    """

    record: str
    label: int | None
    reference: str
    score: float | None
    n_windows: int
    n_scorable: int
    window_probabilities: np.ndarray
    window_labels: np.ndarray


def aggregate(window_probabilities: np.ndarray, k: int = AGGREGATE_TOP_K) -> float | None:
    """Record score: mean of the ``k`` highest window probabilities; None when there is none."""
    p = np.asarray(window_probabilities, dtype=np.float64)
    if p.size == 0:
        return None
    return float(np.sort(p)[-min(k, p.size) :].mean())


def infer_format(folder: Path) -> Format:
    """``"cinc2017"`` when the folder has a ``REFERENCE.csv``, ``"mitdb"`` when its records have ``.atr`` files."""
    folder = Path(folder)
    if (folder / "REFERENCE.csv").is_file():
        return "cinc2017"
    if any(folder.glob("*.atr")):
        return "mitdb"
    raise ModelError(f"cannot tell the format of {folder}: no REFERENCE.csv and no .atr annotations (pass --format)")


def pick_model(models: Sequence[ServedModel], fmt: Format, beds: int) -> ServedModel:
    """The model :func:`evaluate_folder` uses: :func:`models.zoo.select.best_single` for the format's leads.

    CinC folders have one lead, MIT-BIH folders two; the ranking is the mean validation ROC-AUC over the
    data sets each model is measured on, among models whose batch-1 latency fits at ``beds`` beds.
    """
    leads = 1 if fmt == "cinc2017" else 2
    return best_single(models, leads=leads, beds=beds)


def _cinc_reference(folder: Path) -> dict[str, str]:
    path = folder / "REFERENCE.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row[0]: row[1] for row in csv.reader(handle) if len(row) == 2 and row[0] != "record"}


def _windows(signal: np.ndarray, width: int) -> list[tuple[int, int]]:
    return [(end - width, end) for end in window_ends(signal.shape[1], width, HOP_S * SERVING_FS_HZ)]


def _score_record(
    model: ServedModel, name: str, signal: np.ndarray, window_labels: list[int], label: int | None, reference: str
) -> RecordScore:
    width = model.contract.n_samples
    spans = _windows(signal, width)
    waves, rrs, kept = [], [], []
    for i, (start, end) in enumerate(spans):
        real = signal[:, max(start, 0) : end]
        try:
            result = features.extract(real, float(SERVING_FS_HZ))
        except FeatureError:
            continue
        if not result.quality.ok:
            continue
        window = real if start >= 0 else np.pad(real, ((0, 0), (-start, 0)))
        waves.append(window)
        rrs.append(result.rr_vector)
        kept.append(i)
    if kept:
        probabilities = model.predict(ModelBatch(np.stack(waves).astype(np.float32), np.stack(rrs)))
    else:
        probabilities = np.zeros(0, dtype=np.float32)
    labels = np.asarray([window_labels[i] for i in kept], dtype=np.int8)
    return RecordScore(name, label, reference, aggregate(probabilities), len(spans), len(kept), probabilities, labels)


def _mitdb_window_labels(
    rhythm_starts: np.ndarray, rhythms: tuple[str, ...], n: int, spans: list[tuple[int, int]]
) -> list[int]:
    """1 AF, 0 not AF, -1 when the rhythm changes inside the window."""
    bounds = np.append(rhythm_starts, n)
    is_af = np.array([r in AF_RHYTHMS for r in rhythms])
    out = []
    for start, end in spans:
        lo, hi = max(start, 0), end
        overlap = np.clip(np.minimum(bounds[1:], hi) - np.maximum(bounds[:-1], lo), 0, None)
        if int((overlap > 0).sum()) > 1:
            out.append(-1)
        else:
            out.append(int(overlap[is_af].sum() * 2 >= hi - lo))
    return out


def _records(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.hea"))


def _metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    if labels.size == 0:
        return {"n": 0, "n_pos": 0}
    values = probability_metrics(scores, labels)
    return {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v) for k, v in values.items()}


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def evaluate_folder(
    folder: Path,
    fmt: Format,
    models: Sequence[ServedModel],
    json_path: Path,
    png_path: Path | None,
    beds: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every record of ``folder`` and write the report (see the module docstring).

    Parameters
    ----------
    folder : pathlib.Path
        A folder in the format of ``../shared/data/cinc2017`` (``*.hea``/``*.mat`` + ``REFERENCE.csv``) or
        ``../shared/data/mitdb`` (``*.hea``/``*.dat``/``*.atr``).
    fmt : {"cinc2017", "mitdb"}
        Its format.
    models : sequence of ServedModel
        The zoo to choose from.
    json_path : pathlib.Path
        Where the JSON report goes.
    png_path : pathlib.Path, optional
        Where the ROC and reliability figure goes (none when None).
    beds : int
        Beds the served model must keep up with (latency budget of the selection).
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``records``, ``scored``, ``unscorable``, ``roc_auc``, ``pr_auc``, ``sens_at_spec95``, ``ece``
        (record level, labelled scored records), ``models`` (ids), plus ``n``, ``n_pos``, ``brier``,
        ``selection``, ``aggregate``, ``window`` (window-level metrics), ``held_out`` (test-split records
        only) and, for CinC, ``noisy`` (``~`` records: how many came out unscorable).
    """
    folder = Path(folder)
    if fmt not in _DATASET:
        raise ModelError(f"format must be cinc2017 or mitdb, got {fmt!r}")
    names = _records(folder)
    if not names:
        raise ModelError(f"no WFDB records (*.hea) in {folder}")
    model = pick_model(models, fmt, beds)
    reference = _cinc_reference(folder) if fmt == "cinc2017" else {}
    results: list[RecordScore] = []
    for name in tqdm(names, desc=f"evaluate {folder.name}", unit="rec", disable=not progress):
        if fmt == "cinc2017":
            raw = wfdb.rdrecord(str(folder / name))
            signal = resample(raw.p_signal.T, float(raw.fs), SERVING_FS_HZ)[:1]
            ref = reference.get(name, "")
            label = {"A": 1, "N": 0, "O": 0}.get(ref)
            n_win = len(_windows(signal, model.contract.n_samples))
            results.append(_score_record(model, name, signal, [-1 if label is None else label] * n_win, label, ref))
        else:
            rec = read_mitdb_record(folder / name, SERVING_FS_HZ)
            signal = rec.signal_mv
            spans = _windows(signal, model.contract.n_samples)
            labels = _mitdb_window_labels(rec.rhythm_starts, rec.rhythms, signal.shape[1], spans)
            has_af = any(r in AF_RHYTHMS for r in rec.rhythms)
            results.append(_score_record(model, name, signal, labels, int(has_af), "AF" if has_af else "non-AF"))
    report = _report(results, fmt, model, models, beds)
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if png_path is not None:
        _plot(results, Path(png_path), report)
    return report


def _report(
    results: list[RecordScore], fmt: Format, model: ServedModel, models: Sequence[ServedModel], beds: int
) -> dict[str, Any]:
    dataset = _DATASET[fmt]
    scored = [r for r in results if r.score is not None]
    labelled = [r for r in scored if r.label is not None]
    scores = np.array([r.score for r in labelled], dtype=np.float64)
    labels = np.array([r.label for r in labelled], dtype=np.int64)
    record_metrics = _metrics(scores, labels)
    split_of = cinc_split if fmt == "cinc2017" else mitdb_split
    held = []
    for r in labelled:
        try:
            if split_of(r.record) == "test":
                held.append(r)
        except ModelError:
            continue
    held_metrics = _metrics(
        np.array([r.score for r in held], dtype=np.float64), np.array([r.label for r in held], dtype=np.int64)
    )
    win_p = np.concatenate([r.window_probabilities for r in scored]) if scored else np.zeros(0)
    win_y = np.concatenate([r.window_labels for r in scored]) if scored else np.zeros(0, dtype=np.int8)
    keep = win_y >= 0
    window_metrics = _metrics(win_p[keep], win_y[keep].astype(np.int64))
    report: dict[str, Any] = {
        "records": len(results),
        "scored": len(scored),
        "unscorable": len(results) - len(scored),
        "roc_auc": _none_if_nan(record_metrics.get("roc_auc")),
        "pr_auc": _none_if_nan(record_metrics.get("pr_auc")),
        "sens_at_spec95": _none_if_nan(record_metrics.get("sens_at_spec95")),
        "ece": _none_if_nan(record_metrics.get("ece")),
        "models": [model.model_id],
        "format": fmt,
        "n": record_metrics["n"],
        "n_pos": record_metrics["n_pos"],
        "brier": _none_if_nan(record_metrics.get("brier")),
        "unscorable_labelled": sum(1 for r in results if r.score is None and r.label is not None),
        "aggregate": f"mean of the top-{AGGREGATE_TOP_K} window probabilities of a record",
        "window_s": model.contract.window_s,
        "hop_s": HOP_S,
        "selection": {
            "rule": "best mean validation ROC-AUC (over the data sets each model is measured on) among models "
            "whose contract the folder's leads satisfy and whose batch-1 latency fits the per-window budget "
            "at this number of beds",
            "beds": beds,
            "budget_ms_per_window": round(latency_budget_ms(beds), 4),
            "val_roc_auc": _none_if_nan(validation_auc(model)),
            f"val_roc_auc_{dataset}": _none_if_nan(validation_auc(model, dataset)),
            "latency_ms_batch1": model.card.latency_ms.get(1),
            "candidates": len(models),
        },
        "window": {k: _none_if_nan(v) for k, v in window_metrics.items()},
        "held_out": {"split": "test", **{k: _none_if_nan(v) for k, v in held_metrics.items()}},
    }
    if fmt == "cinc2017":
        noisy = [r for r in results if r.reference == "~"]
        report["noisy"] = {
            "records": len(noisy),
            "unscorable": sum(1 for r in noisy if r.score is None),
            "windows": sum(r.n_windows for r in noisy),
            "unscorable_windows": sum(r.n_windows - r.n_scorable for r in noisy),
        }
    return report


def _plot(results: list[RecordScore], path: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    labelled = [r for r in results if r.score is not None and r.label is not None]
    y = np.array([r.label for r in labelled], dtype=np.int64)
    p = np.array([r.score for r in labelled], dtype=np.float64)
    fig, (ax_roc, ax_rel) = plt.subplots(1, 2, figsize=(10, 4.5))
    if 0 < y.sum() < y.size:
        fpr, tpr, _ = roc_curve(y, p)
        ax_roc.plot(fpr, tpr, label=f"ROC-AUC {report['roc_auc']:.3f}")
    ax_roc.plot([0, 1], [0, 1], ":", color="grey")
    ax_roc.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (records)")
    ax_roc.legend(loc="lower right")
    bins = np.linspace(0.0, 1.0, 11)
    if y.size:
        which = np.minimum(np.digitize(p, bins) - 1, 9)
        centres, observed, counts = [], [], []
        for b in range(10):
            m = which == b
            if m.any():
                centres.append(float(p[m].mean()))
                observed.append(float(y[m].mean()))
                counts.append(int(m.sum()))
        ax_rel.plot(centres, observed, "o-", label=f"ECE {report['ece']:.3f}" if report["ece"] is not None else "")
        for x_, y_, n_ in zip(centres, observed, counts, strict=True):
            ax_rel.annotate(str(n_), (x_, y_), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax_rel.plot([0, 1], [0, 1], ":", color="grey")
    ax_rel.set(xlabel="mean predicted probability", ylabel="observed AF fraction", title="reliability (records)")
    ax_rel.legend(loc="upper left")
    fig.suptitle(
        f"{report['format']}: {report['models'][0]}, {report['scored']}/{report['records']} records scored", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
