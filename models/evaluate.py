"""Score every record of a PhysioNet folder with what the worker would serve, and report.

``holmes evaluate --data DIR [--format cinc2017|mitdb] [--beds N] --json PATH`` builds the ensemble a worker
would serve at ``N`` beds (``holmes.serving``) and calls :func:`evaluate_folder` with it. This module does not
choose models: it takes a :class:`Scorer` (``ensemble.scoring.WindowScorer`` of the plan, or of one model for
``--single``/``--model``) and the description of what it serves. The procedure, per record:

1. Read it (WFDB), resample to 250 Hz, keep every lead (the stream's view: CinC one lead, MIT-BIH two).
2. Cut windows of the stream's length (``window_s``, 10 s by default) whose ends lie on a 10-s grid (the
   grid of the validation and test windows, :mod:`models.windows`; the worker's own hop, 5 s, only doubles
   the windows); a record shorter than the window gives one window ending at its last sample, zero-padded
   at the start.
3. Hand the record's windows to the scorer in one call, as the worker hands it a batch: it runs the
   quality gate (:func:`features.extract`) on each whole window (failing windows come out unscorable),
   then every member on the windows it can read (one-lead members on CinC, every member on MIT-BIH) and
   combines them with the plan's calibrated combiner. No deadlines: every member runs for every window.
4. Record score: the mean of the ``k = 3`` highest window probabilities (all windows when fewer are
   scorable). Why: a CinC recording (median 30 s) is 3 windows, so its score is the mean over the whole
   recording; in a 30-min MIT-BIH record it asks for about 30 s of sustained AF, robust to one
   spurious window but sensitive to a paroxysm. A record with no scorable window is ``unscorable``.
5. Record recalibration, reported alongside (the headline figures are of the aggregate above): the
   aggregate is a ranking score, not a calibrated probability (a top-3 mean of calibrated windows is biased
   up for a long record, and the members' and the ensemble's temperatures were fitted on windows, not
   records), so the report adds the ECE and Brier score of ``sigmoid(a * logit(aggregate) + b)``, Platt
   scaling fitted (minimum NLL) on the labelled **validation-split** records of the folder, scored by the
   same scorer (they are scored for it even when ``split`` selects others). It is monotone, so ROC-AUC,
   PR-AUC and sensitivity at 95 % specificity do not change. It needs :data:`RECALIBRATION_MIN_PER_CLASS`
   validation records of each class: the CinC folder has 36 AF and 522 non-AF; MIT-BIH's 8 validation
   records (2 AF) are too few. It is not the record score: on the CinC test split it helped some scorers
   and hurt others (README, "Evaluate"). The CinC validation split has 6.5 % AF records and the test split
   11.8 % (models/SPLITS.md), and a fit on 36 AF records moves the intercept by about as much as that gap.

Labels: CinC from ``REFERENCE.csv`` (``A`` positive, ``N``/``O`` negative, ``~`` counted apart: those
records must come out unscorable, and the report says how many do); MIT-BIH: a record is positive when
its ``.atr`` rhythm annotations contain ``(AFIB`` or ``(AFL``, and window-level metrics use the window's
annotated rhythm (AF over at least half the window; windows straddling a rhythm change left out).

Splits: ``split="test"`` scores only the records of the fixed test split (:mod:`models.splits`), the only
honest figures for the shared folders (their other records trained, calibrated or selected the models).
With every record scored, the test-split records are also reported apart, as ``held_out``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import wfdb
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from tqdm.auto import tqdm

from features import FeatureError
from models.data import AF_RHYTHMS, read_mitdb_record, resample
from models.errors import ModelError
from models.evaluation import probability_metrics
from models.splits import Split, cinc_split, mitdb_split
from models.windows import window_ends
from models.zoo.served import SERVING_FS_HZ

__all__ = [
    "AGGREGATE_TOP_K",
    "HOP_S",
    "RECALIBRATION_MIN_PER_CLASS",
    "Format",
    "RecordCalibration",
    "RecordScore",
    "Scorer",
    "WindowVerdict",
    "aggregate",
    "evaluate_folder",
    "infer_format",
    "record_split",
]

Format = Literal["cinc2017", "mitdb"]
HOP_S = 10
AGGREGATE_TOP_K = 3
RECALIBRATION_MIN_PER_CLASS = 10
_P_CLIP = 1e-6
_DATASET = {"cinc2017": "cinc", "mitdb": "mitdb"}


class WindowVerdict(Protocol):
    """What :func:`evaluate_folder` reads of a window's verdict (``ensemble.scoring.Verdict`` is one)."""

    @property
    def state(self) -> str: ...

    @property
    def risk(self) -> float | None: ...


class Scorer(Protocol):
    """What scores the windows (``ensemble.scoring.WindowScorer`` is one).

    ``score`` returns one verdict per window, in order: ``state == "ok"`` with a calibrated AF probability
    in ``risk``, or any other state (unscorable) with ``risk`` None. ``model_ids`` names the models whose
    scores it combines.
    """

    @property
    def model_ids(self) -> tuple[str, ...]: ...

    def score(self, signals: Sequence[np.ndarray], sample_rate_hz: float) -> Sequence[WindowVerdict]: ...


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
        Windows cut and windows the scorer scored.
    window_probabilities : numpy.ndarray
        float64 probability of each scored window.
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


@dataclass(frozen=True, slots=True)
class RecordCalibration:
    """Platt scaling of record aggregates: ``p = sigmoid(a * logit(aggregate) + b)``.

    Attributes
    ----------
    a, b : float
        Slope and intercept on the logit scale.
    n, n_pos : int
        Records (and AF records) it was fitted on.
    """

    a: float
    b: float
    n: int
    n_pos: int

    def __call__(self, score: float) -> float:
        return float(expit(self.a * _logit(score) + self.b))

    @classmethod
    def fit(cls, aggregates: np.ndarray, labels: np.ndarray) -> RecordCalibration:
        """Minimum-NLL ``a`` in [0.05, 20] and ``b`` in [-10, 10] (L-BFGS-B from the identity, ``a=1, b=0``).

        Raises
        ------
        ModelError
            Fewer than :data:`RECALIBRATION_MIN_PER_CLASS` records of either class, or a failed fit.
        """
        z = _logit(np.asarray(aggregates, dtype=np.float64))
        y = np.asarray(labels, dtype=np.float64)
        n_pos = int(y.sum())
        if z.shape != y.shape or min(n_pos, y.size - n_pos) < RECALIBRATION_MIN_PER_CLASS:
            raise ModelError(
                f"{y.size} validation records ({n_pos} AF): record recalibration needs at least "
                f"{RECALIBRATION_MIN_PER_CLASS} of each class"
            )

        def nll(ab: np.ndarray) -> float:
            s = ab[0] * z + ab[1]
            return float(-np.mean(y * log_expit(s) + (1.0 - y) * log_expit(-s)))

        result = minimize(nll, np.array([1.0, 0.0]), method="L-BFGS-B", bounds=[(0.05, 20.0), (-10.0, 10.0)])
        if not (result.success and np.all(np.isfinite(result.x))):
            raise ModelError(f"record recalibration did not converge: {result.message}")
        return cls(float(result.x[0]), float(result.x[1]), int(y.size), n_pos)


def _logit(p: Any) -> Any:
    q = np.clip(np.asarray(p, dtype=np.float64), _P_CLIP, 1.0 - _P_CLIP)
    return np.log(q) - np.log1p(-q)


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


def record_split(record: str, fmt: Format) -> Split | None:
    """The record's split (:mod:`models.splits`); None for an MIT-BIH-format record outside the fixed lists."""
    if fmt == "cinc2017":
        return cinc_split(record)
    try:
        return mitdb_split(record)
    except ModelError:
        return None


def _cinc_reference(folder: Path) -> dict[str, str]:
    path = folder / "REFERENCE.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row[0]: row[1] for row in csv.reader(handle) if len(row) == 2 and row[0] != "record"}


def _windows(n_samples: int, width: int) -> list[tuple[int, int]]:
    return [(end - width, end) for end in window_ends(n_samples, width, HOP_S * SERVING_FS_HZ)]


def _cut(signal: np.ndarray, spans: list[tuple[int, int]]) -> list[np.ndarray]:
    """The windows, zero-padded at the start where ``start < 0`` (a record shorter than the window)."""
    out = []
    for start, end in spans:
        real = signal[:, max(start, 0) : end]
        out.append(np.ascontiguousarray(real if start >= 0 else np.pad(real, ((0, 0), (-start, 0))), np.float32))
    return out


def _probabilities(scorer: Scorer, windows: list[np.ndarray]) -> list[float | None]:
    """Per window, the scorer's probability, or None when it is unscorable."""
    if not windows:
        return []
    try:
        verdicts = list(scorer.score(windows, float(SERVING_FS_HZ)))
    except FeatureError:
        # A window the feature extractor rejects outright (non-finite samples in a second lead): score the
        # windows one by one so that only that window is lost.
        if len(windows) == 1:
            return [None]
        return [p for w in windows for p in _probabilities(scorer, [w])]
    if len(verdicts) != len(windows):
        raise ModelError(f"the scorer returned {len(verdicts)} verdicts for {len(windows)} windows")
    return [float(v.risk) if v.state == "ok" and v.risk is not None else None for v in verdicts]


def _score_record(
    scorer: Scorer, name: str, signal: np.ndarray, spans: list[tuple[int, int]], window_labels: list[int],
    label: int | None, reference: str,
) -> RecordScore:
    probabilities = _probabilities(scorer, _cut(signal, spans))
    kept = [i for i, p in enumerate(probabilities) if p is not None]
    p = np.array([probabilities[i] for i in kept], dtype=np.float64)
    labels = np.asarray([window_labels[i] for i in kept], dtype=np.int8)
    return RecordScore(name, label, reference, aggregate(p), len(spans), len(kept), p, labels)


def _read_and_score(
    scorer: Scorer, folder: Path, fmt: Format, name: str, width: int, reference: Mapping[str, str]
) -> RecordScore:
    if fmt == "cinc2017":
        raw = wfdb.rdrecord(str(folder / name))
        signal = resample(raw.p_signal.T, float(raw.fs), SERVING_FS_HZ)[:1]
        ref = reference.get(name, "")
        label = {"A": 1, "N": 0, "O": 0}.get(ref)
        spans = _windows(signal.shape[1], width)
        return _score_record(scorer, name, signal, spans, [-1 if label is None else label] * len(spans), label, ref)
    rec = read_mitdb_record(folder / name, SERVING_FS_HZ)
    signal = rec.signal_mv
    spans = _windows(signal.shape[1], width)
    labels = _mitdb_window_labels(rec.rhythm_starts, rec.rhythms, signal.shape[1], spans)
    has_af = any(r in AF_RHYTHMS for r in rec.rhythms)
    return _score_record(scorer, name, signal, spans, labels, int(has_af), "AF" if has_af else "non-AF")


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
    scorer: Scorer,
    json_path: Path,
    png_path: Path | None,
    *,
    window_s: float = 10.0,
    split: Split | None = None,
    ensemble: Mapping[str, Any] | None = None,
    recalibrate: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every record of ``folder`` with ``scorer`` and write the report (see the module docstring).

    Parameters
    ----------
    folder : pathlib.Path
        A folder in the format of ``../shared/data/cinc2017`` (``*.hea``/``*.mat`` + ``REFERENCE.csv``) or
        ``../shared/data/mitdb`` (``*.hea``/``*.dat``/``*.atr``).
    fmt : {"cinc2017", "mitdb"}
        Its format.
    scorer : Scorer
        Scores windows (``ensemble.scoring.WindowScorer`` of the served plan).
    json_path : pathlib.Path
        Where the JSON report goes.
    png_path : pathlib.Path, optional
        Where the ROC and reliability figure goes (none when None).
    window_s : float
        The stream's window length in seconds (the worker's ``window_s``).
    split : {"train", "val", "test"}, optional
        Score only the records of this split (:func:`record_split`); every record when None.
    ensemble : mapping, optional
        What the scorer serves (members, validation objective, predicted latency, budget, beds, ...),
        copied into the report as ``ensemble``.
    recalibrate : bool
        Also report record scores recalibrated on the folder's validation-split records (step 5 of the
        module docstring); they are scored for it.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``records``, ``scored``, ``unscorable``, ``roc_auc``, ``pr_auc``, ``sens_at_spec95``, ``ece``
        (record level, labelled scored records), ``models`` (the scorer's model ids), plus ``n``, ``n_pos``,
        ``brier``, ``split``, ``aggregate``, ``window`` (window-level metrics), ``held_out`` (test-split
        records only), ``record_calibration`` (the Platt fit and ECE/Brier of the recalibrated scores),
        ``ensemble`` (when given) and, for CinC, ``noisy`` (``~`` records: how many came out unscorable).
    """
    folder = Path(folder)
    if fmt not in _DATASET:
        raise ModelError(f"format must be cinc2017 or mitdb, got {fmt!r}")
    if not window_s > 0:
        raise ModelError(f"window_s must be positive, got {window_s}")
    every = _records(folder)
    names = every if split is None else [n for n in every if record_split(n, fmt) == split]
    if not names:
        where = f" of the {split} split" if split is not None else ""
        raise ModelError(f"no WFDB records (*.hea){where} in {folder}")
    val_names = [n for n in every if record_split(n, fmt) == "val"] if recalibrate else []
    width = round(window_s * SERVING_FS_HZ)
    reference = _cinc_reference(folder) if fmt == "cinc2017" else {}
    scored: dict[str, RecordScore] = {}
    to_score = sorted(set(names) | set(val_names))
    for name in tqdm(to_score, desc=f"evaluate {folder.name}", unit="rec", disable=not progress):
        scored[name] = _read_and_score(scorer, folder, fmt, name, width, reference)
    calibration: RecordCalibration | None = None
    calibration_note = "not asked for"
    if recalibrate:
        fit_on = [r for r in (scored[n] for n in val_names) if r.score is not None and r.label is not None]
        try:
            calibration = RecordCalibration.fit(
                np.array([r.score for r in fit_on], dtype=np.float64),
                np.array([r.label for r in fit_on], dtype=np.int64),
            )
        except ModelError as exc:
            calibration_note = str(exc)
    results = [scored[n] for n in names]
    report = _report(results, fmt, tuple(scorer.model_ids), window_s, split, ensemble)
    report["record_calibration"] = _calibration_report(results, fmt, calibration, calibration_note, split)
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if png_path is not None:
        _plot(results, Path(png_path), report)
    return report


def _report(
    results: list[RecordScore], fmt: Format, model_ids: tuple[str, ...], window_s: float, split: Split | None,
    ensemble: Mapping[str, Any] | None,
) -> dict[str, Any]:
    scored = [r for r in results if r.score is not None]
    labelled = [r for r in scored if r.label is not None]
    scores = np.array([r.score for r in labelled], dtype=np.float64)
    labels = np.array([r.label for r in labelled], dtype=np.int64)
    record_metrics = _metrics(scores, labels)
    held = [r for r in labelled if record_split(r.record, fmt) == "test"]
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
        "models": list(model_ids),
        "format": fmt,
        "split": split or "all",
        "n": record_metrics["n"],
        "n_pos": record_metrics["n_pos"],
        "brier": _none_if_nan(record_metrics.get("brier")),
        "unscorable_labelled": sum(1 for r in results if r.score is None and r.label is not None),
        "aggregate": f"mean of the top-{AGGREGATE_TOP_K} window probabilities of a record",
        "window_s": window_s,
        "hop_s": HOP_S,
        "window": {k: _none_if_nan(v) for k, v in window_metrics.items()},
        "held_out": {"split": "test", **{k: _none_if_nan(v) for k, v in held_metrics.items()}},
    }
    if ensemble is not None:
        report["ensemble"] = dict(ensemble)
    if fmt == "cinc2017":
        noisy = [r for r in results if r.reference == "~"]
        report["noisy"] = {
            "records": len(noisy),
            "unscorable": sum(1 for r in noisy if r.score is None),
            "windows": sum(r.n_windows for r in noisy),
            "unscorable_windows": sum(r.n_windows - r.n_scorable for r in noisy),
        }
    return report


def _calibration_report(
    results: list[RecordScore], fmt: Format, calibration: RecordCalibration | None, note: str, split: Split | None
) -> dict[str, Any]:
    """The record recalibration and ECE and Brier score of the recalibrated scores (all, and test split)."""
    if calibration is None:
        return {"method": None, "why": note}
    labelled = [r for r in results if r.score is not None and r.label is not None]
    held = [r for r in labelled if record_split(r.record, fmt) == "test"]
    out: dict[str, Any] = {
        "method": "platt: sigmoid(a * logit(aggregate) + b), minimum NLL on the validation-split records",
        "a": round(calibration.a, 4),
        "b": round(calibration.b, 4),
        "fitted_on": {"split": "val", "n": calibration.n, "n_pos": calibration.n_pos},
        "in_sample": {"val": "yes", None: "the validation records among those scored (held_out is not)"}.get(
            split, "no"),
    }
    for key, group in (("recalibrated", labelled), ("recalibrated_held_out", held)):
        values = _metrics(
            np.array([calibration(r.score) for r in group if r.score is not None], dtype=np.float64),
            np.array([r.label for r in group], dtype=np.int64),
        )
        out[key] = {k: _none_if_nan(values.get(k)) for k in ("n", "ece", "brier")}
    return out


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
    calibration = report.get("record_calibration", {})
    curves = [(p, "o-", f"top-{AGGREGATE_TOP_K} mean" if calibration.get("method") else "", report["ece"])]
    if calibration.get("method"):
        platt = RecordCalibration(calibration["a"], calibration["b"], 0, 0)
        recalibrated = np.array([platt(float(v)) for v in p], dtype=np.float64)
        curves.append((recalibrated, "s--", "Platt (val)", calibration["recalibrated"]["ece"]))
    for values, style, name, ece in curves if y.size else []:
        centres, observed, counts = _reliability(values, y)
        label = " ".join(x for x in (name, f"ECE {ece:.3f}" if ece is not None else "") if x)
        ax_rel.plot(centres, observed, style, label=label, alpha=1.0 if style == "o-" else 0.6)
        if style == "o-":
            for x_, y_, n_ in zip(centres, observed, counts, strict=True):
                ax_rel.annotate(str(n_), (x_, y_), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax_rel.plot([0, 1], [0, 1], ":", color="grey")
    ax_rel.set(xlabel="mean predicted probability", ylabel="observed AF fraction", title="reliability (records)")
    ax_rel.legend(loc="upper left")
    models = report["models"]
    served = models[0] if len(models) == 1 else f"ensemble of {len(models)} ({', '.join(models)})"
    fig.suptitle(
        f"{report['format']} ({report['split']} records): {served}, {report['scored']}/{report['records']} scored",
        fontsize=9 if len(models) < 4 else 7, wrap=True,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _reliability(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> tuple[list[float], list[float], list[int]]:
    """Mean probability, observed AF fraction and count of each non-empty equal-width bin."""
    which = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    centres, observed, counts = [], [], []
    for b in range(n_bins):
        m = which == b
        if m.any():
            centres.append(float(p[m].mean()))
            observed.append(float(y[m].mean()))
            counts.append(int(m.sum()))
    return centres, observed, counts
