"""``holmes ensemble report``: every strategy per (beds, budget), scored on validation and test, table and plot."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ensemble.report import build_report, format_report, pareto_front, plot_report
from holmes.cli import build_parser, main
from models.zoo import ServedModel, load_zoo


@pytest.fixture(scope="module")
def zoo() -> list[ServedModel]:
    return load_zoo()


def card_latency(zoo: list[ServedModel]) -> Callable[[int], Callable[[tuple[str, ...]], float]]:
    """A synthetic load model: 40 ms fixed plus every member's batch-1 cost once per bed."""
    cost = {m.model_id: m.card.latency_ms[1] for m in zoo}
    return lambda beds: lambda members: 40.0 + beds * sum(cost[m] for m in members)


@pytest.fixture(scope="module")
def report(zoo: list[ServedModel]) -> dict[str, Any]:
    # one-lead 10-s stream: the 13 one-lead/RR models, 8,191 subsets
    return build_report(zoo, budgets_ms=(30.0, 42.0, 60.0), beds=(1, 8), window_s=10.0, leads=1,
                        latency=card_latency(zoo), progress=False)


def test_every_strategy_is_scored_on_validation_and_test(report: dict[str, Any]) -> None:
    assert len(report["candidates"]) == 13 and report["config"]["exact"]
    assert len(report["cells"]) == 6
    for cell in report["cells"]:
        strategies = cell["strategies"]
        if cell["budget_ms"] == 30.0:  # below the 40 ms fixed cost
            assert all("infeasible" in s for s in strategies.values())
            continue
        assert set(strategies) == {"selector", "exhaustive", "beam", "best-single", "greedy-accuracy",
                                   "greedy-latency", "random"}
        for name, s in strategies.items():
            assert s["predicted_p99_ms"] <= cell["budget_ms"], name
            assert set(s["test"]) == {"cinc", "mitdb"} and set(s["val"]) == {"cinc", "mitdb"}
            assert 0.5 < s["test"]["cinc"]["roc_auc"] <= 1.0 and 0.0 < s["test"]["cinc"]["pr_auc"] <= 1.0
            assert s["test"]["cinc"]["n"] > 1000  # the CinC test windows, not validation ones
            assert s["objective"] <= strategies["exhaustive"]["objective"] + 1e-12, name
        # 1,023 subsets: the selector searches exactly and matches the optimum
        assert strategies["selector"]["method"] == "exhaustive"
        assert strategies["selector"]["members"] == strategies["exhaustive"]["members"]
        assert strategies["best-single"]["members"].__len__() == 1


def test_test_figures_are_those_of_the_held_out_split(report: dict[str, Any], zoo: list[ServedModel]) -> None:
    """A single model's test ROC-AUC in the report is its card's test ROC-AUC."""
    cards = {m.model_id: m.card.metrics for m in zoo}
    for cell in report["cells"]:
        single = cell["strategies"]["best-single"]
        if "members" in single:
            (model_id,) = single["members"]
            for d in ("cinc", "mitdb"):
                assert single["test"][d]["roc_auc"] == pytest.approx(cards[model_id][f"test/{d}"]["roc_auc"],
                                                                     abs=2e-4)
                assert single["val"][d]["roc_auc"] == pytest.approx(cards[model_id][f"val/{d}"]["roc_auc"],
                                                                    abs=2e-4)


def test_pareto_front_is_monotone_and_holds_the_picks(report: dict[str, Any]) -> None:
    for beds, front in report["pareto"].items():
        assert front
        p99 = [p["predicted_p99_ms"] for p in front]
        objective = [p["objective"] for p in front]
        assert p99 == sorted(p99) and objective == sorted(objective) and len(set(objective)) == len(objective)
        for cell in (c for c in report["cells"] if str(c["beds"]) == beds):
            pick = cell["strategies"]["exhaustive"]
            if "members" in pick:
                assert pick["members"] in [p["members"] for p in front]


def test_pareto_front_of_points() -> None:
    points = [(10.0, 0.8, ("a",)), (12.0, 0.79, ("b",)), (12.0, 0.9, ("c",)), (20.0, 0.9, ("d",)),
              (30.0, 0.95, ("e",))]
    assert [m for _, _, m in pareto_front(points)] == [("a",), ("c",), ("e",)]


def test_table_and_plot(report: dict[str, Any], tmp_path: Path) -> None:
    text = format_report(report)
    assert "== 1 bed(s) ==" in text and "== 8 bed(s) ==" in text
    assert "selector (exhaustive)" in text and "(none fits)" in text and "test ROC cinc" in text
    png = tmp_path / "pareto.png"
    plot_report(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(report)  # JSON-ready


def test_cli_arguments() -> None:
    argv = ["ensemble", "report", "--budgets", "20,50.5", "--beds", "1,64", "--json", "r.json"]
    args = build_parser().parse_args(argv)
    assert args.budgets == [20.0, 50.5] and args.beds == [1, 64] and args.json == "r.json" and args.leads == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ensemble", "report", "--beds", "1,x"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ensemble", "report", "--budgets", "-5"])


def test_cli_runs_with_the_real_latency_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    code = main(["ensemble", "report", "--leads", "1", "--beds", "1", "--budgets", "10,60", "--json", str(out),
                 "--png", str(tmp_path / "report.png"), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "selector (exhaustive)" in printed and "(none fits)" in printed
    report = json.loads(out.read_text())
    assert report["config"]["latency"].startswith("LatencyModel")
    cell = next(c for c in report["cells"] if c["budget_ms"] == 60.0)
    assert cell["strategies"]["selector"]["predicted_p99_ms"] <= 60.0
    assert (tmp_path / "report.png").stat().st_size > 0


def test_test_ceiling_is_the_hindsight_best_of_the_zoo(zoo: list[ServedModel]) -> None:
    from sklearn.metrics import roc_auc_score

    from ensemble.report import test_ceiling
    from ensemble.selector import ValidationTable, candidates

    cands = [m for m in candidates(zoo, 10.0, 1) if m.model_id.startswith(("rr-", "resnet1d-w8", "transformer"))]
    ids = [m.model_id for m in cands]
    test = ValidationTable.from_models(cands, split="test", window_s=10.0)
    ceiling = test_ceiling(ids, test, max_members=2)
    cinc = ceiling["cinc"]
    assert cinc["subsets"] == len(ids) + len(ids) * (len(ids) - 1) // 2
    rows = test.datasets == "cinc"
    singles = {m: roc_auc_score(test.labels[rows], test.combined_logits((m,))[rows]) for m in ids}
    best = max(singles, key=singles.__getitem__)
    assert cinc["best_single"]["members"] == [best] and cinc["best_single"]["roc_auc"] == round(singles[best], 4)
    # a pair of these beats the best of them on test, and the ceiling is at least every pair's figure
    pair = cinc["best_by_roc"]
    assert len(pair["members"]) == 2 and cinc["roc_margin"] > 0 and cinc["pr_margin"] >= 0
    for a, b in [(ids[0], ids[1]), (best, ids[-1])]:
        assert roc_auc_score(test.labels[rows], test.combined_logits((a, b))[rows]) <= pair["roc_auc"] + 5e-5
    text = format_report({"config": {"window_s": 10, "leads": 1, "objective": "x", "latency": "x", "exact": True,
                                     "search_space": 1, "beds": []}, "candidates": [], "cells": [],
                          "ceiling": ceiling})
    assert f"best by ROC {pair['roc_auc']:.4f} (+{cinc['roc_margin']:.4f})" in text
