"""Ensemble plans: stored once from the plans topic, shown on /api/ensemble, paged, counted in /metrics."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from api import ApiConfig
from api.db import make_engine
from api.migrate import upgrade_api
from api.plans import PlanMonitor, PlanStore, PlanWrite, reason_kind
from ingest.codec import encode_plan
from ingest.schemas import PlanRecord, ScoreRecord
from ingest.topics import Topics

from .conftest import PlanFactory, RawFactory, app_config

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

Feed = Callable[["TestClient", list[ScoreRecord]], int]
ScoreFactory = Callable[..., ScoreRecord]
_PLAN_FIELDS = ("selection", "budget_ms", "predicted_vs_measured_latency", "replans")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade_api(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def plan_store(engine: Engine) -> PlanStore:
    return PlanStore(engine)


def _monitor(client: TestClient) -> PlanMonitor:
    monitor: PlanMonitor = client.app.state.services.plans  # type: ignore[attr-defined]
    return monitor


@pytest.mark.parametrize(
    ("reason", "kind"),
    [("start", "start"), ("load: beds 64 -> 128", "load"), ("Slower model cnn@2 (x1.5)", "slower"),
     ("accuracy-gain +0.004", "accuracy-gain"), ("", "other"), ("   ", "other"), ("→ moved", "other"),
     ("x" * 100, "x" * 32)],
)
def test_reason_kind_is_the_first_word(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind


def test_plans_are_stored_once_and_paged_newest_first(plan_store: PlanStore, make_plan: PlanFactory) -> None:
    a0, a1, b0 = make_plan("a", 0), make_plan("a", 1), make_plan("b", 0, budget_ms=800.0)
    first = plan_store.add_many([a0, a1, a0], received_at_s=10.0)
    assert [(p.worker_id, p.plan_id) for p in first.inserted] == [("a", 0), ("a", 1)]
    assert (first.duplicates, first.conflicts, first.rejected) == (1, 0, 0)
    # Read again (a replayed topic), plus a new worker, plus a worker that reused its plan id with another plan.
    again = plan_store.add_many([a1, b0, make_plan("a", 0, at_s=5.0)], received_at_s=11.0)
    assert [(p.worker_id, p.plan_id) for p in again.inserted] == [("b", 0)]
    assert (again.duplicates, again.conflicts) == (2, 1)
    assert plan_store.counts() == (3, 1)
    assert [(r.worker_id, r.plan_id) for r in plan_store.latest_per_worker()] == [("b", 0), ("a", 1)]
    page = plan_store.page(limit=2)
    assert [(r.worker_id, r.plan_id) for r in page] == [("b", 0), ("a", 1)]
    assert (page[1].reason_kind, page[1].members, page[1].previous, page[1].received_at_s) == (
        "load", ["rr-af@1", "cnn@2"], ["rr-af@1"], 10.0)
    assert [(r.worker_id, r.plan_id) for r in plan_store.page(limit=2, before=page[-1].id)] == [("a", 0)]
    assert [r.plan_id for r in plan_store.page(worker_id="a")] == [1, 0]
    with pytest.raises(ValueError, match="limit"):
        plan_store.page(limit=0)


def test_a_plan_the_database_refuses_is_skipped_not_fatal(plan_store: PlanStore, make_plan: PlanFactory) -> None:
    refused = make_plan("a", 1, reason="load \ud800")  # a lone surrogate: no driver can encode it
    outcome = plan_store.add_many([make_plan("a", 0), refused, make_plan("a", 2)], received_at_s=1.0)
    assert [p.plan_id for p in outcome.inserted] == [0, 2] and outcome.rejected == 1
    assert plan_store.counts() == (2, 1)


def test_plans_wait_for_a_database_that_is_away(plan_store: PlanStore, make_plan: PlanFactory) -> None:
    from sqlalchemy.exc import OperationalError

    from api.metrics import Metrics

    calls: list[int] = []

    def flaky(plans: list[PlanRecord], received_at_s: float) -> PlanWrite:
        calls.append(len(plans))
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return plan_store.add_many(plans, received_at_s)

    monitor = PlanMonitor("broker:9092", "t.plans", PlanStore(plan_store.engine), Metrics(), backoff_max_s=0.05)
    monitor.store.add_many = flaky  # type: ignore[method-assign]
    asyncio.run(monitor._store_until_done([make_plan("w1", 0), make_plan("w1", 1)]))
    assert calls == [2, 2] and monitor.stats.stored == 2 and monitor.stats.last_error is None
    assert [p.plan_id for p in monitor.in_force()] == [1] and monitor.changes == 1


def test_ensemble_explains_why_before_the_first_plan(client: TestClient) -> None:
    body = client.get("/api/ensemble").json()
    for field in _PLAN_FIELDS:
        assert body[field]["available"] is False and "plans topic" in body[field]["reason"], field
    assert body["plans"]["state"] == "disabled" and body["selection_changes"] == 0
    assert client.get("/api/ensemble/plans").json() == {"items": [], "next_before": None}


def test_plans_reach_the_ensemble_page_history_and_metrics(
    client_factory: Callable[[ApiConfig], TestClient], database_url: str, make_plan: PlanFactory,
    make_raw: RawFactory, feed: Feed, make_score: ScoreFactory, login: Callable[..., dict[str, str]],
) -> None:
    client = client_factory(app_config(database_url, anonymous_read=False))
    replan = make_plan("w1", 1, reason="slower model cnn@2 (x2.0)", members=("rr-af@1",),
                       previous=("rr-af@1", "cnn@2"), predicted_p50_ms=60.0, predicted_p99_ms=150.0,
                       measured_p99_ms=900.0, slowdown=2.0)
    values: list[bytes | None] = [
        encode_plan(make_plan("w1", 0)), b"not json", encode_plan(replan), encode_plan(replan),
        encode_plan(make_plan("w2", 0, budget_ms=800.0)),
        encode_plan(make_plan("w3", 0)).replace(b'"start"', b'"start\\u0000"'),  # PostgreSQL refuses NUL
        None,
    ]
    raws = [make_raw(v, offset=i, topic="t.plans") for i, v in enumerate(values)]
    assert client.portal is not None
    assert client.portal.call(_monitor(client).handle, raws) == 3
    now = time.time()
    feed(client, [make_score("bed-1", now - 0.1, models=("rr-af@1",),
                             extra={"plan_id": 1, "partial": 0, "budget_ms": 1000.0, "predicted_ms": 150.0,
                                    "measured_ms": 180.0})])

    assert client.get("/api/ensemble").status_code == 401
    viewer = login(client, "viewer")
    body = client.get("/api/ensemble", headers=viewer).json()
    assert {k: body["plans"][k] for k in ("received", "stored", "duplicates", "conflicts", "undecodable",
                                          "rejected")} == {"received": 7, "stored": 3, "duplicates": 1,
                                                           "conflicts": 0, "undecodable": 2, "rejected": 1}
    selection = body["selection"]
    assert selection["available"] is True
    assert [(w["worker_id"], w["plan_id"], w["members"]) for w in selection["workers"]] == [
        ("w2", 0, ["rr-af@1", "cnn@2"]), ("w1", 1, ["rr-af@1"])]
    assert selection["workers"][1]["since_s"] == replan.at_s and selection["workers"][1]["objective"] == 0.981
    assert body["budget_ms"] == {"available": True, "budget_ms": 800.0, "by_worker": {"w2": 800.0, "w1": 1000.0}}
    latency = body["predicted_vs_measured_latency"]
    assert (latency["budget_ms"], latency["predicted_p50_ms"], latency["predicted_p99_ms"]) == (800.0, 120.0, 310.5)
    assert latency["measured_p99_ms"] == body["latency"]["p99_ms"] and latency["measured_p99_ms"] > 0
    assert (latency["worker_measured_p99_ms"], latency["worker_measured_windows"]) == (180.0, 1)
    assert latency["within_budget"] is True
    w1 = next(w for w in latency["workers"] if w["worker_id"] == "w1")
    assert (w1["predicted_p99_ms"], w1["measured_p99_ms"], w1["slowdown"]) == (150.0, 900.0, 2.0)
    replans = body["replans"]
    assert (replans["total"], replans["changes"], body["selection_changes"]) == (3, 1, 1)
    assert [(p["worker_id"], p["plan_id"], p["reason_kind"]) for p in replans["items"]] == [
        ("w2", 0, "start"), ("w1", 1, "slower"), ("w1", 0, "start")]
    assert replans["items"][1]["previous"] == ["rr-af@1", "cnn@2"] and replans["items"][1]["windows_per_s"] == 1.6

    page = client.get("/api/ensemble/plans", params={"limit": 2}, headers=viewer).json()
    assert [p["worker_id"] for p in page["items"]] == ["w2", "w1"] and page["next_before"] is not None
    older = client.get("/api/ensemble/plans", params={"limit": 2, "before": page["next_before"]}, headers=viewer)
    assert [(p["worker_id"], p["plan_id"]) for p in older.json()["items"]] == [("w1", 0)]
    assert older.json()["next_before"] is None
    mine = client.get("/api/ensemble/plans", params={"worker_id": "w1"}, headers=viewer).json()
    assert [p["plan_id"] for p in mine["items"]] == [1, 0]
    assert client.get("/api/ensemble/plans", params={"limit": 0}, headers=viewer).status_code == 422

    text = client.get("/metrics", headers=viewer).text
    for line in ('holmes_ensemble_selection_changes_total{reason="start"} 2.0',
                 'holmes_ensemble_selection_changes_total{reason="slower"} 1.0',
                 'holmes_ensemble_budget_seconds{worker="w2"} 0.8',
                 'holmes_ensemble_predicted_p99_seconds{worker="w1"} 0.15',
                 'holmes_ensemble_predicted_p50_seconds{worker="w2"} 0.12',
                 'holmes_ensemble_members{worker="w1"} 1.0',
                 "holmes_plans_received_total 7.0", "holmes_plans_undecodable_total 2.0",
                 "holmes_plans_rejected_total 1.0", "holmes_plan_monitor_up 0.0"):
        assert line in text, line

    # Another api on the same database starts with the plans in force and the history, and stores nothing twice.
    restarted = client_factory(app_config(database_url))
    again = restarted.get("/api/ensemble").json()
    assert [w["worker_id"] for w in again["selection"]["workers"]] == ["w2", "w1"]
    assert (again["replans"]["total"], again["selection_changes"], len(again["replans"]["items"])) == (3, 1, 3)
    assert restarted.portal is not None
    assert restarted.portal.call(_monitor(restarted).handle, raws) == 0
    assert _monitor(restarted).stats.duplicates == 4


def test_the_ensemble_page_shows_plans_and_skipped_members(client: TestClient) -> None:
    from api.config import STATIC_DIR

    page = (STATIC_DIR / "index.html").read_text()
    for hook in ('class="selection"', 'class="replans"'):
        assert hook in page, hook
    ops = (STATIC_DIR / "js" / "ops.js").read_text()
    assert "predicted_vs_measured_latency" in ops and "/api/ensemble" in ops
    assert "skipped_models" in (STATIC_DIR / "js" / "bed.js").read_text()
    assert client.get("/ensemble").status_code == 200


def _wait(client: TestClient, done: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while not done(body := client.get("/api/ensemble").json()):
        assert time.monotonic() < deadline, body["plans"]
        time.sleep(0.1)
    return body


@pytest.mark.integration
def test_plans_from_the_topic_reach_the_table_and_the_page(
    kafka_bootstrap: str, topics_factory: Callable[..., Topics], client_factory: Callable[[ApiConfig], TestClient],
    database_url: str, make_plan: PlanFactory,
) -> None:
    from kafka import KafkaProducer

    topics = topics_factory()
    config = app_config(database_url, kafka_bootstrap=kafka_bootstrap, scores_topic=topics.scores.name,
                        deadletter_topic=topics.deadletter.name, plans_topic=topics.plans.name,
                        consumer_group=f"g-{uuid.uuid4().hex[:8]}")
    client = client_factory(config)
    waiting = _wait(client, lambda b: b["plans"]["state"] == "running")
    assert waiting["selection"]["available"] is False
    assert f"no ensemble plan received yet on {topics.plans.name}" in waiting["selection"]["reason"]

    start: PlanRecord = make_plan("w1", 0)
    replan = make_plan("w1", 1, reason="load: beds 8 -> 16", beds=16, windows_per_s=3.2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        for value in (encode_plan(start), b'{"v": 1, "worker_id": "w1"}', encode_plan(replan), encode_plan(start)):
            producer.send(topics.plans.name, key=b"w1", value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)

    body = _wait(client, lambda b: b["plans"]["stored"] + b["plans"]["duplicates"] + b["plans"]["undecodable"] >= 4)
    assert (body["plans"]["stored"], body["plans"]["duplicates"], body["plans"]["undecodable"]) == (2, 1, 1)
    assert body["plans"]["state"] == "running" and body["plans"]["last_error"] is None
    (worker,) = body["selection"]["workers"]
    assert (worker["worker_id"], worker["plan_id"], worker["beds"], worker["windows_per_s"]) == ("w1", 1, 16, 3.2)
    assert [p["reason"] for p in body["replans"]["items"]] == ["load: beds 8 -> 16", "start"]
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT worker_id, plan_id FROM ensemble_plans ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("w1", 0), ("w1", 1)]

    # An api that starts later reads the topic from its start again: every plan is a duplicate now.
    restarted = client_factory(config)
    # received is counted on arrival, stored/duplicates after the database answered: wait for the latter
    again = _wait(restarted, lambda b: b["plans"]["stored"] + b["plans"]["duplicates"] + b["plans"]["undecodable"] >= 4)
    assert (again["plans"]["stored"], again["plans"]["duplicates"]) == (0, 3)
    assert [p["plan_id"] for p in restarted.get("/api/ensemble/plans").json()["items"]] == [1, 0]
    assert 'holmes_ensemble_selection_changes_total{reason="load"} 1.0' in client.get("/metrics").text
    assert restarted.get("/api/ensemble").json()["selection_changes"] == 1
