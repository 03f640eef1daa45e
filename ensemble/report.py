"""``holmes ensemble report``: the selector against the exact optimum and the baselines, budget by budget.

For every load (beds) and p99 budget, each strategy of :mod:`ensemble.selector` picks an ensemble from the
candidates of the stream (validation split only); the report then shows, per pick, its predicted p99, its
validation objective, and the *same subset's* ROC-AUC and PR-AUC on the held-out test split, per data set
(the ensemble temperature is fitted on validation). Strategies: ``selector`` (:func:`select`, what the
worker runs, timed from a cold cache), ``exhaustive`` (the exact optimum, where the search space is at
most ``exact_max_subsets``), ``beam``, ``best-single``, ``greedy-accuracy``, ``greedy-latency`` and
``random`` (best of 100 seeded random feasible subsets).

The PNG is the accuracy / latency trade-off per load: the Pareto front of validation objective against
predicted p99 over every subset the exact search evaluated (up to the largest budget), with the
selector's pick at each budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensemble.errors import EnsembleError
from ensemble.selector import (
    LatencyFn,
    NoFeasibleEnsemble,
    Selection,
    ValidationTable,
    beam_search,
    best_of_random,
    best_single,
    candidates,
    exhaustive_search,
    greedy_by_accuracy,
    greedy_by_latency,
    search_space_size,
    select,
)

if TYPE_CHECKING:
    from models.zoo import ServedModel

__all__ = [
    "DEFAULT_BEDS",
    "DEFAULT_BUDGETS_MS",
    "REPORT_EXACT_MAX_SUBSETS",
    "STRATEGIES",
    "build_report",
    "format_report",
    "pareto_front",
    "plot_report",
    "real_latency",
    "test_ceiling",
]

DEFAULT_BUDGETS_MS: tuple[float, ...] = (20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
DEFAULT_BEDS: tuple[int, ...] = (1, 64, 256, 1000)
REPORT_EXACT_MAX_SUBSETS = 2**18
"""The report's exact optimum is computed up to this many subsets (offline, so far beyond the worker's)."""

STRATEGIES: tuple[str, ...] = (
    "selector", "exhaustive", "beam", "best-single", "greedy-accuracy", "greedy-latency", "random",
)


def real_latency(
    models: Sequence[ServedModel], *, hop_s: float = 5.0, phases: int = 1
) -> Callable[[int], LatencyFn]:
    """``beds -> predict_p99_ms`` from :class:`ensemble.latency.LatencyModel` (the models' profiles) at a
    load of ``beds`` beds whose windows fall due in ``phases`` groups per hop (1: all at once, the worst case)."""
    from ensemble.latency import LatencyModel, Load

    model = LatencyModel.from_models(models)

    def for_beds(beds: int) -> LatencyFn:
        load = Load(beds=beds, hop_s=hop_s, phases=phases)
        return lambda members: model.predict(members, load).p99_ms

    return for_beds


class _Recorded:
    """Caches an objective or latency function of the members and remembers every value."""

    def __init__(self, fn: Callable[[tuple[str, ...]], float]) -> None:
        self.fn = fn
        self.values: dict[frozenset[str], float] = {}

    def __call__(self, members: tuple[str, ...]) -> float:
        key = frozenset(members)
        value = self.values.get(key)
        if value is None:
            value = self.values[key] = float(self.fn(members))
        return value


def pareto_front(points: Sequence[tuple[float, float, tuple[str, ...]]]) -> list[tuple[float, float, tuple[str, ...]]]:
    """The points no other beats on both axes: ``(p99_ms, objective, members)``, cheapest first.

    A point is kept when its objective is strictly above that of every cheaper (or equally cheap) point.
    """
    front: list[tuple[float, float, tuple[str, ...]]] = []
    best = -math.inf
    for p99, objective, members in sorted(points, key=lambda p: (p[0], -p[1], len(p[2]))):
        if objective > best:
            front.append((p99, objective, members))
            best = objective
    return front


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 5) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


def _evaluate(selection: Selection, val: ValidationTable, test: ValidationTable) -> dict[str, Any]:
    combiner = val.combiner(selection.members)
    val_metrics = val.metrics(selection.members, combiner)
    test_metrics = test.metrics(selection.members, combiner)
    keep = ("n", "n_pos", "roc_auc", "pr_auc", "ece", "coverage")
    return {
        **selection.as_dict(),
        "ensemble_temperature": combiner.temperature,
        "val": {d: _round({k: m[k] for k in keep}) for d, m in val_metrics.items()},
        "test": {d: _round({k: m[k] for k in keep}) for d, m in test_metrics.items()},
    }


def _cell(
    ids: Sequence[str],
    beds: int,
    budget_ms: float,
    val: ValidationTable,
    test: ValidationTable,
    objective: _Recorded,
    latency: _Recorded,
    raw_latency: LatencyFn,
    *,
    seed: int,
    exact: bool,
) -> dict[str, Any]:
    """Every strategy at one (beds, budget)."""
    cell: dict[str, Any] = {"beds": beds, "budget_ms": budget_ms, "strategies": {}}
    names = [n for n in STRATEGIES if exact or n != "exhaustive"]
    # the selector as the worker runs it: nothing cached
    val.clear_cache()
    started = time.perf_counter()
    try:
        chosen = select(ids, val.objective, raw_latency, budget_ms, seed=seed)
    except NoFeasibleEnsemble as exc:
        cell["strategies"] = {name: {"infeasible": str(exc)} for name in names}
        return cell
    seconds = time.perf_counter() - started
    cell["strategies"]["selector"] = {**_evaluate(chosen, val, test), "seconds": round(seconds, 3)}
    for name in names[1:]:
        if name == "exhaustive":
            picked = exhaustive_search(ids, objective, latency, budget_ms)
        elif name == "beam":
            picked = beam_search(ids, objective, latency, budget_ms, seed=seed)
        elif name == "best-single":
            picked = best_single(ids, objective, latency, budget_ms)
        elif name == "greedy-accuracy":
            picked = greedy_by_accuracy(ids, objective, latency, budget_ms)
        elif name == "greedy-latency":
            picked = greedy_by_latency(ids, objective, latency, budget_ms)
        else:
            picked = best_of_random(ids, objective, latency, budget_ms, seed=seed)
        cell["strategies"][name] = _evaluate(picked, val, test)
    return cell


def build_report(
    models: Sequence[ServedModel],
    *,
    budgets_ms: Sequence[float] = DEFAULT_BUDGETS_MS,
    beds: Sequence[int] = DEFAULT_BEDS,
    window_s: float = 10.0,
    leads: int = 2,
    artifact_dir: Path | None = None,
    latency: Callable[[int], LatencyFn] | None = None,
    hop_s: float = 5.0,
    phases: int = 1,
    seed: int = 0,
    exact_max_subsets: int = REPORT_EXACT_MAX_SUBSETS,
    ceiling: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every strategy for every (beds, budget) and score the picks on validation and test.

    Parameters
    ----------
    models : sequence of ServedModel
        The zoo (``models.zoo.load_zoo``); the stream's candidates are taken from it.
    budgets_ms : sequence of float
        p99 budgets in ms.
    beds : sequence of int
        Loads.
    window_s, leads : float, int
        The stream (:func:`ensemble.selector.candidates`).
    artifact_dir : pathlib.Path, optional
        Where the predictions files are (the folder the zoo was loaded from).
    latency : callable, optional
        ``beds -> predict_p99_ms``; :func:`real_latency` of the candidates by default.
    hop_s, phases : float, int
        The load of the default latency model (:class:`ensemble.latency.Load`).
    seed : int
        Seed of the random baseline and of the selector's random starts.
    exact_max_subsets : int
        Largest search space for the ``exhaustive`` column.
    ceiling : bool
        Add :func:`test_ceiling` (``"ceiling"``).
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        JSON-ready: ``config``, ``candidates``, ``cells`` (one per (beds, budget) with a result or an
        ``infeasible`` reason per strategy) and ``pareto`` (per beds).
    """
    from tqdm import tqdm

    cands = candidates(models, window_s, leads)
    if not cands:
        raise EnsembleError(f"no model serves {window_s:g}-s windows with {leads} lead(s)")
    ids = [m.model_id for m in cands]
    val = ValidationTable.from_models(cands, artifact_dir=artifact_dir, split="val", window_s=window_s)
    test = ValidationTable.from_models(cands, artifact_dir=artifact_dir, split="test", window_s=window_s)
    latency_for = latency if latency is not None else real_latency(cands, hop_s=hop_s, phases=phases)
    exact = search_space_size(len(ids)) <= exact_max_subsets
    budgets = sorted(float(b) for b in budgets_ms)
    cells: list[dict[str, Any]] = []
    pareto: dict[str, list[dict[str, Any]]] = {}
    bar = tqdm(total=len(beds) * len(budgets), desc="ensemble report", unit="cell", disable=not progress)
    for n_beds in beds:
        raw = latency_for(n_beds)
        recorded = _Recorded(raw)
        objective = _Recorded(val.objective)
        for budget in budgets:
            cells.append(_cell(ids, n_beds, budget, val, test, objective, recorded, raw, seed=seed, exact=exact))
            bar.update()
        if exact:
            pareto[str(n_beds)] = _front(ids, objective, recorded, budgets[-1], progress=progress, beds=n_beds)
    bar.close()
    extra = {"ceiling": test_ceiling(ids, test)} if ceiling else {}
    return {
        "config": {
            "window_s": window_s, "leads": leads, "budgets_ms": budgets, "beds": list(beds), "seed": seed,
            "latency": "injected" if latency is not None else f"LatencyModel, hop {hop_s:g} s, {phases} phase(s)",
            "exact": exact, "search_space": search_space_size(len(ids)), "objective":
                "validation ROC-AUC of the mean calibrated logit, averaged over " + ", ".join(val.scored_datasets),
        },
        "candidates": [
            {"model": m.model_id, "window_s": m.contract.window_s, "leads": m.contract.leads,
             "objective": round(val.objective((m.model_id,)), 6)}
            for m in cands
        ],
        "cells": cells,
        "pareto": pareto,
        **extra,
    }


def test_ceiling(ids: Sequence[str], test: ValidationTable, max_members: int = 4) -> dict[str, Any]:
    """How far any ensemble of the zoo could get above its best member, with hindsight: per data set, the
    best single model and the best subset of at most ``max_members`` picked *on the test split* (by ROC-AUC
    and by PR-AUC of the combined window score), among the models that score that data set.

    An upper bound on what selection can gain (it only ever sees validation), to tell a selector that misses
    a margin from a zoo that does not hold one. Window level, as the rest of the report.
    """
    from itertools import combinations

    from sklearn.metrics import average_precision_score, roc_auc_score

    out: dict[str, Any] = {"picked_on": "test (hindsight: an upper bound, never used to select)",
                           "max_members": max_members}
    for d in test.scored_datasets:
        rows = test.datasets == d
        labels = test.labels[rows]
        own = [m for m in ids if test.present[rows, test.members.index(m)].all()]
        scores: list[tuple[float, float, tuple[str, ...]]] = []
        for k in range(1, min(max_members, len(own)) + 1):
            for members in combinations(own, k):
                z = test.combined_logits(members)[rows]
                scores.append((float(roc_auc_score(labels, z)), float(average_precision_score(labels, z)), members))
        single = max((s for s in scores if len(s[2]) == 1), key=lambda s: (s[0], s[1]))
        by_roc = max(scores, key=lambda s: (s[0], s[1]))
        by_pr = max(scores, key=lambda s: (s[1], s[0]))

        def entry(s: tuple[float, float, tuple[str, ...]]) -> dict[str, Any]:
            return {"members": list(s[2]), "roc_auc": round(s[0], 4), "pr_auc": round(s[1], 4)}

        out[d] = {"models": len(own), "subsets": len(scores), "best_single": entry(single),
                  "best_by_roc": entry(by_roc), "best_by_pr": entry(by_pr),
                  "roc_margin": round(by_roc[0] - single[0], 4), "pr_margin": round(by_pr[1] - single[1], 4)}
    return out


def _front(
    ids: Sequence[str], objective: _Recorded, latency: _Recorded, budget_ms: float, *, progress: bool, beds: int
) -> list[dict[str, Any]]:
    """Pareto front over every subset within ``budget_ms`` (the exact search visits them all)."""
    from tqdm import tqdm

    try:
        exhaustive_search(ids, objective, latency, budget_ms)
    except NoFeasibleEnsemble:
        return []
    order = {m: i for i, m in enumerate(ids)}
    points = []
    # the exact search skips predicting subsets of a subtree known to fit: predict them now
    for key, value in tqdm(list(objective.values.items()), desc=f"pareto front, {beds} beds", unit="subset",
                           leave=False, disable=not progress):
        members = tuple(sorted(key, key=order.__getitem__))
        p99 = latency(members)
        if p99 <= budget_ms:
            points.append((p99, value, members))
    return [
        {"predicted_p99_ms": round(p, 3), "objective": round(o, 6), "members": list(m)}
        for p, o, m in pareto_front(points)
    ]


# -- text --------------------------------------------------------------------------------------------


def _short(model_id: str) -> str:
    return model_id.removesuffix("@1")


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and math.isfinite(value) else "-"




def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a else c.ljust(w) for c, w, a in zip(cells, widths, right, strict=True)).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def format_report(report: Mapping[str, Any]) -> str:
    """The report as plain-text tables: one block per load, then the selector's picks in full."""
    config = report["config"]
    datasets = sorted({d for cell in report["cells"] for s in cell["strategies"].values() for d in s.get("test", {})})
    lines = [
        f"Ensemble selection: {config['window_s']:g}-s windows, {config['leads']} lead(s), "
        f"{len(report['candidates'])} candidates ({config['search_space']} subsets"
        f"{'' if config['exact'] else '; no exact optimum, too many'}).",
        f"val obj = {config['objective']} (validation split: what selection sees).",
        "test = the same subsets on the held-out test split, ensemble temperature fitted on validation.",
        f"p99 = predicted end-to-end p99 ({config['latency']}).",
        "",
    ]
    headers = ["budget ms", "strategy", "k", "p99 ms", "val obj"]
    for d in datasets:
        headers += [f"test ROC {d}", f"test PR {d}"]
    headers += ["evaluated", "predicted"]
    right = [True, False, True, True, True] + [True] * (2 * len(datasets)) + [True, True]
    for n_beds in config["beds"]:
        rows: list[list[str]] = []
        picks: list[str] = []
        for cell in (c for c in report["cells"] if c["beds"] == n_beds):
            budget = f"{cell['budget_ms']:g}"
            for name in STRATEGIES:
                result = cell["strategies"].get(name)
                if result is None:
                    continue
                if "infeasible" in result:
                    rows.append([budget, "(none fits)", "-", "-", "-"] + ["-"] * (2 * len(datasets)) + ["-", "-"])
                    break
                label = f"{name} ({result['method']})" if name == "selector" else name
                row = [budget, label, str(len(result["members"])), _fmt(result["predicted_p99_ms"], 1),
                       _fmt(result["objective"], 4)]
                for d in datasets:
                    m = result["test"].get(d, {})
                    row += [_fmt(m.get("roc_auc")), _fmt(m.get("pr_auc"))]
                rows.append([*row, str(result["evaluated"]), str(result.get("predicted", "-"))])
                budget = ""
                if name == "selector":
                    picks.append(
                        f"  {cell['budget_ms']:g} ms ({result['seconds']:.2f} s, T_ens "
                        f"{result['ensemble_temperature']:.2f}): " + ", ".join(_short(m) for m in result["members"])
                    )
        lines += [f"== {n_beds} bed(s) ==", *_table(headers, rows, right)]
        if picks:
            lines += ["selector picks:", *picks]
        lines.append("")
    ceiling = report.get("ceiling")
    if ceiling:
        lines.append(f"Test ceiling: subsets of at most {ceiling['max_members']} picked on the test split "
                     "(hindsight, an upper bound on what any selection gains; window level):")
        for d, c in ((d, c) for d, c in ceiling.items() if isinstance(c, dict)):
            single, roc, pr = c["best_single"], c["best_by_roc"], c["best_by_pr"]
            lines += [
                f"  {d} ({c['models']} models, {c['subsets']} subsets): best single {_short(single['members'][0])} "
                f"ROC {single['roc_auc']:.4f} / PR {single['pr_auc']:.4f}",
                f"    best by ROC {roc['roc_auc']:.4f} (+{c['roc_margin']:.4f}): "
                + ", ".join(_short(m) for m in roc["members"]),
                f"    best by PR  {pr['pr_auc']:.4f} (+{c['pr_margin']:.4f}): "
                + ", ".join(_short(m) for m in pr["members"]),
            ]
        lines.append("")
    return "\n".join(lines)


def plot_report(report: Mapping[str, Any], path: Path) -> None:
    """Pareto front (validation objective vs predicted p99) per load, with the selector's pick per budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    beds = report["config"]["beds"]
    fig, axes = plt.subplots(1, len(beds), figsize=(4.2 * len(beds), 4.0), squeeze=False, sharey=True)
    for ax, n_beds in zip(axes[0], beds, strict=True):
        front = report["pareto"].get(str(n_beds), [])
        if front:
            x = [p["predicted_p99_ms"] for p in front]
            y = [p["objective"] for p in front]
            ax.step(x, y, where="post", color="tab:blue", label="Pareto front (all subsets)")
            ax.plot(x, y, ".", color="tab:blue", markersize=3)
        picks: dict[tuple[str, ...], list[str]] = {}
        singles: dict[tuple[str, ...], tuple[float, float]] = {}
        points: dict[tuple[str, ...], tuple[float, float]] = {}
        for cell in (c for c in report["cells"] if c["beds"] == n_beds):
            ax.axvline(cell["budget_ms"], color="grey", linestyle=":", linewidth=0.8)
            chosen = cell["strategies"].get("selector", {})
            if "members" in chosen:
                key = tuple(chosen["members"])
                picks.setdefault(key, []).append(f"{cell['budget_ms']:g}")
                points[key] = (chosen["predicted_p99_ms"], chosen["objective"])
            single = cell["strategies"].get("best-single", {})
            if "members" in single:
                singles[tuple(single["members"])] = (single["predicted_p99_ms"], single["objective"])
        for i, (key, budgets) in enumerate(picks.items()):
            x, y = points[key]
            ax.plot(x, y, "*", color="tab:red", markersize=11, label="selector pick" if i == 0 else None)
            # below and to the right of the front, which is empty: no point there is feasible and better
            ax.annotate(f"budget {', '.join(budgets)} ms", (x, y), textcoords="offset points",
                        xytext=(6, -12 - 10 * i), ha="left", fontsize=7)
        for i, (x, y) in enumerate(singles.values()):
            ax.plot(x, y, "x", color="black", label="best single" if i == 0 else None)
        ax.set_xscale("log")
        budgets_ms = [c["budget_ms"] for c in report["cells"] if c["beds"] == n_beds]
        if budgets_ms:
            ax.set_xlim(min(budgets_ms) / 1.5, max(budgets_ms) * 4)
        ax.set(title=f"{n_beds} bed(s)", xlabel="predicted p99 (ms)")
        if not front and not picks:
            ax.text(0.5, 0.5, "no ensemble fits", transform=ax.transAxes, ha="center", va="center")
        if ax.get_legend_handles_labels()[1]:
            ax.legend(loc="lower right", fontsize=7)
    axes[0][0].set_ylabel("validation objective (mean ROC-AUC)")
    config = report["config"]
    fig.suptitle(f"ensemble selection, {config['window_s']:g}-s windows, {config['leads']} lead(s)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
