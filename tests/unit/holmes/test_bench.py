"""The benchmark's 2x-burst accounting: windows go to the phase their end time falls in, plans are listed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from holmes.bench import SHARED_MACHINE_CONTENTION, BenchOptions, burst_figures, first_plan_contention, format_burst
from holmes.cli import build_parser


def test_burst_phases_split_windows_by_end_time() -> None:
    options = BenchOptions(beds=2, duration_s=90.0, burst=True)
    assert options.burst_window_s == (30.0, 60.0)
    t0 = 1000.0
    arrivals = {("bed-001", t0 + 20.0): 0.1, ("bed-002", t0 + 35.0): 0.2,  # before the first burst window
                ("burst-001", t0 + 40.0): 0.3, ("bed-001", t0 + 45.0): 1.5,  # during
                ("burst-001", t0 + 60.0): 0.9,  # the last burst window, during too
                ("bed-002", t0 + 65.0): 0.5,  # settling: in no phase
                ("bed-002", t0 + 80.0): 0.4}  # after
    extras = {k: {"queue_depth": d} for k, d in zip(arrivals, [0, 1, 7, 12, 3, 2, 0], strict=True)}
    plans = [{"at_s": t0 + 1.0, "plan_id": 1, "reason": "start", "members": ["a@1", "b@1"], "beds": 2,
              "predicted_p99_ms": 300.0, "measured_p99_ms": None},
             {"at_s": t0 + 42.0, "plan_id": 2, "reason": "over budget: 4 beds", "members": ["a@1"], "beds": 4,
              "predicted_p99_ms": 200.0, "measured_p99_ms": 1100.0}]
    b = burst_figures(options, SimpleNamespace(arrivals=arrivals, extras=extras), t0, plans)
    ph = b["phases"]
    assert (ph["before"]["windows"], ph["during"]["windows"], ph["after"]["windows"]) == (2, 3, 1)
    assert ph["during"]["beds"] == 2 and ph["during"]["over_budget"] == 1
    assert (b["burst_from_s"], b["burst_to_s"]) == (30.0, 60.0)
    assert ph["during"]["max_ms"] == pytest.approx(1500.0) and ph["after"]["p99_ms"] == pytest.approx(400.0)
    assert b["max_queue_depth"] == 12 and [p["at_s"] for p in b["plans"]] == [1.0, 42.0]
    text = format_burst(b, 1000.0)
    assert "plan 2 at   42.0 s: 1 members for 4 beds" in text and "over the 1000 ms budget: 1" in text


def test_burst_takes_one_bed_count() -> None:
    args = build_parser().parse_args(["bench", "--beds", "64,128", "--duration", "30", "--burst"])
    assert args.fn(args) == 2


def test_the_prediction_takes_what_the_worker_measured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``worker_figures`` predicts with the worker's own measurements (a stats file as the worker writes it):
    its upstream, bunching, jitter and chunk cost move the prediction; capacity at full work discounts
    partial windows."""
    import json

    from holmes.bench import worker_figures

    members = ["rr-af@1", "resnet1d-w16d4-rr-2l-10s@1"]
    base = {"executor": {"items": 1000, "busy_s": 2.0}, "plan": {"members": members}, "contention": 1.5,
            "slowdown": {}, "member_runs": 1500, "member_slots": 2000}
    measured = {**base, "transport": {"upstream_ms": [float(v) for v in range(40, 140, 10)],
                                      "downstream_ms": 5.0, "downstream_wait_ms": 25.0},
                "jitter": [0.5, 1.0, 1.5], "chunk_ms": 0.3, "last_load": {"bunch_s": 0.1}}
    options = BenchOptions(beds=1000, duration_s=45.0)
    figures = []
    for i, stats in enumerate((base, measured)):
        path = tmp_path / f"stats-{i}.json"
        path.write_text(json.dumps(stats))
        figures.append(worker_figures(options, path))
    plain, full = figures
    assert plain["capacity_windows_per_s"] == 500.0
    assert plain["full_capacity_windows_per_s"] == 375.0  # three quarters of the members ran
    # upstream up to 130 ms + up to 25 ms downstream instead of the fixed 45 ms
    assert full["predicted_ms"]["p99_ms"] > plain["predicted_ms"]["p99_ms"] + 60
    assert full["upstream_ms"] == {"p50": 90.0, "top": 130.0}
    assert full["predicted_ms"]["batches_per_tick"] == pytest.approx(20.0)  # 100-ms bunches, first window alone
    # the feature costs the worker timed at its start, against which its contention was measured, and the
    # event loop's measured time per published score
    costly = {**measured, "feature_costs_ms": {"fixed": 0.0, "per_window": 5.0},
              "executor": {**measured["executor"], "deliver_ms": 3.0}}
    path = tmp_path / "stats-costly.json"
    path.write_text(json.dumps(costly))
    dear = worker_figures(options, path)
    assert dear["predicted_ms"]["p99_ms"] > full["predicted_ms"]["p99_ms"] + 50
    # a plan of two-lead members ran its one-lead fallback too (the worker's stats name it): predicted with it
    alone = {**measured, "plan": {"members": ["resnet1d-w16d4-rr-2l-10s@1"]}}
    with_fallback = {**alone, "plan": {**alone["plan"], "fallback": ["transformer-d48l3-rr-1l-10s@1"]}}
    predicted = []
    for i, stats in enumerate((alone, with_fallback)):
        path = tmp_path / f"stats-lead-{i}.json"
        path.write_text(json.dumps(stats))
        predicted.append(worker_figures(options, path)["predicted_ms"]["p99_ms"])
    assert predicted[1] > predicted[0]


def test_the_benchs_worker_assumes_a_shared_machine_unless_told_otherwise() -> None:
    assert first_plan_contention({}) == str(SHARED_MACHINE_CONTENTION) == "2.0"
    assert first_plan_contention({"HOLMES_CPU_CONTENTION": ""}) == "2.0"
    assert first_plan_contention({"HOLMES_CPU_CONTENTION": "1.0"}) == "1.0"


def test_each_plan_is_measured_on_its_own_windows() -> None:
    from holmes.bench import by_plan

    arrivals = {("bed-001", 10.0): 0.8, ("bed-002", 10.0): 0.9,  # the start plan, heavy
                ("bed-001", 15.0): 0.2, ("bed-002", 15.0): 0.25, ("bed-003", 15.0): 0.3,  # after the shed
                ("bed-004", 15.0): 0.1}  # a score without provenance (a scoring error): in no plan
    extras = {("bed-001", 10.0): {"plan_id": 0, "predicted_ms": 780.0, "models": ["a@1", "b@1", "c@1"]},
              ("bed-002", 10.0): {"plan_id": 0, "predicted_ms": 780.0, "models": ["a@1", "b@1"]},
              ("bed-001", 15.0): {"plan_id": 1, "predicted_ms": 250.0, "models": ["a@1"]},
              ("bed-002", 15.0): {"plan_id": 1, "predicted_ms": 250.0, "models": ["a@1"]},
              ("bed-003", 15.0): {"plan_id": 1, "predicted_ms": 250.0, "models": ["a@1"]},
              ("bed-004", 15.0): {}}
    rows = by_plan(SimpleNamespace(arrivals=arrivals, extras=extras))  # type: ignore[arg-type]
    assert [(r["plan_id"], r["windows"], r["members"]) for r in rows] == [(0, 2, 3), (1, 3, 1)]
    assert rows[0]["p99_ms"] == pytest.approx(899.0) and rows[0]["predicted_p99_ms"] == 780.0
    assert rows[1]["measured_over_predicted"] == pytest.approx(round(299.0 / 250.0, 2))
