"""Which single zoo model to serve, until the ensemble selector exists.

Rule: among the models whose contract the stream satisfies (window length, leads available) and whose
batch-1 latency fits the per-window budget at the given number of beds, take the highest validation
ROC-AUC; ties go to the cheaper model. The test split plays no part. By default the validation ROC-AUC is
the mean over the data sets the model is measured on (CinC and MIT-BIH for one-lead and RR models,
MIT-BIH for two-lead models): the CinC validation split has 37 AF patients and MIT-BIH's two, so either
alone ranks close models by noise (the best CinC-validation model of the first zoo, an RR MLP, was
below the RR random forest on the CinC test split). ``dataset="cinc"`` or ``"mitdb"`` ranks by one.

Latency budget: every hop (5 s by default) the worker scores one window per bed; a quarter of the hop is
granted to model inference (the rest is for feature extraction, the quality gate, Kafka and the API), and
windows are assumed to be scored one at a time (the worst case: no batching), so a model fits at ``beds``
beds when ``latency_ms[1] <= 0.25 * hop_s * 1000 / beds``. Models without a latency profile are
assumed to fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from models.errors import ModelError
from models.zoo.served import ServedModel

__all__ = ["INFERENCE_SHARE", "best_single", "latency_budget_ms", "validation_auc"]

INFERENCE_SHARE = 0.25
"""Fraction of each hop granted to model inference."""


def latency_budget_ms(beds: int, hop_s: float = 5.0, share: float = INFERENCE_SHARE) -> float:
    """Per-window inference budget in ms at ``beds`` beds: ``share * hop_s * 1000 / beds``."""
    if beds < 1:
        raise ModelError(f"beds must be >= 1, got {beds}")
    return share * hop_s * 1000.0 / beds


def validation_auc(model: ServedModel, dataset: str = "mean") -> float:
    """The card's validation ROC-AUC on ``dataset`` (``"cinc"``, ``"mitdb"``, or ``"mean"`` over both where
    measured); NaN when not measured."""
    if dataset == "mean":
        values = [validation_auc(model, d) for d in ("cinc", "mitdb")]
        values = [v for v in values if not math.isnan(v)]
        return float(sum(values) / len(values)) if values else math.nan
    entry = model.card.metrics.get(f"val/{dataset}")
    value = entry.get("roc_auc") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.nan


def best_single(
    models: Sequence[ServedModel],
    *,
    dataset: str = "mean",
    window_s: float | None = None,
    leads: int | None = None,
    beds: int | None = None,
    hop_s: float = 5.0,
) -> ServedModel:
    """The best single model by validation ROC-AUC among those that fit (see the module docstring).

    Parameters
    ----------
    models : sequence of ServedModel
        Candidates (e.g. :func:`models.zoo.load_zoo`).
    dataset : {"mean", "cinc", "mitdb"}
        Validation ROC-AUC that ranks the models (see :func:`validation_auc`).
    window_s : float, optional
        The stream's window length in seconds: models with longer windows cannot be served (shorter
        ones read the last part of the window). Any by default.
    leads : int, optional
        Leads the stream delivers; models needing more are skipped. Any by default.
    beds : int, optional
        Beds served; models whose batch-1 latency exceeds :func:`latency_budget_ms` are skipped.
    hop_s : float
        Window hop in seconds (for the budget).

    Returns
    -------
    ServedModel

    Raises
    ------
    ModelError
        When no model qualifies.
    """
    budget = latency_budget_ms(beds, hop_s) if beds is not None else math.inf
    candidates = []
    for model in models:
        c = model.contract
        if window_s is not None and c.window_s > window_s + 1e-9:
            continue
        if leads is not None and c.leads > leads:
            continue
        b1 = model.card.latency_ms.get(1)
        if b1 is not None and b1 > budget:
            continue
        auc = validation_auc(model, dataset)
        if math.isnan(auc):
            continue
        candidates.append((-auc, b1 if b1 is not None else math.inf, model.name, model.version, model))
    if not candidates:
        raise ModelError(
            f"no model fits: dataset={dataset}, window_s={window_s}, leads={leads}, beds={beds} "
            f"(budget {budget:.3g} ms per window) among {[m.model_id for m in models]}"
        )
    return min(candidates, key=lambda c: c[:4])[-1]
