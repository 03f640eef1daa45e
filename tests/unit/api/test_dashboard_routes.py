"""The dashboard's REST and WebSocket: bed status and staleness, history paging, trends, alerts live, operations."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from api import ApiConfig
from api.deadletters import parse_letter
from api.schemas import score_status
from ingest.schemas import ScoreRecord
from ingest.topics import Topics

from .conftest import ADMIN, app_config

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

Feed = Callable[["TestClient", list[ScoreRecord]], int]
ScoreFactory = Callable[..., ScoreRecord]


@pytest.mark.parametrize(
    ("state", "complete", "extra", "expected"),
    [
        ("ok", True, {}, "ok"),
        ("ok", True, {"partial": 1}, "partial"),
        ("ok", True, {"partial": "true"}, "partial"),
        ("ok", True, {"skipped_models": "cnn@2"}, "partial"),
        ("ok", True, {"partial": 0, "skipped_models": ""}, "ok"),
        ("ok", False, {}, "incomplete"),
        ("unscorable", False, {"partial": 1}, "unscorable"),
    ],
)
def test_score_status(state: str, complete: bool, extra: dict[str, Any], expected: str) -> None:
    assert score_status(state, complete, extra) == expected


def test_beds_carry_status_strip_alert_and_turn_stale(
    client_factory: Callable[[ApiConfig], TestClient], sqlite_url: str, feed: Feed, make_score: ScoreFactory
) -> None:
    client = client_factory(app_config(sqlite_url, hop_s=0.2, alert_raise_windows=2))
    now = time.time()
    feed(client, [make_score("bed-1", now - 5, risk=0.9, strip_hz=50.0, strip_mv=(0.1, 0.4, -0.1)),
                  make_score("bed-1", now, risk=0.95, strip_hz=50.0, strip_mv=(0.2, 0.5, -0.2)),
                  make_score("bed-2", now, extra={"partial": 1, "skipped_models": "cnn@2"})])
    beds = {b["bed_id"]: b for b in client.get("/api/beds").json()}
    one = beds["bed-1"]
    assert (one["status"], one["stale"], one["latest"]["status"]) == ("ok", False, "ok")
    assert one["latest"]["strip_mv"] == [0.2, 0.5, -0.2] and one["latest"]["strip_hz"] == 50.0
    assert one["alert"]["state"] == "active" and one["alert"]["peak_risk"] == 0.95
    assert beds["bed-2"]["status"] == "partial" and beds["bed-2"]["alert"] is None
    assert client.get("/api/beds/bed-1").json()["alert"]["id"] == one["alert"]["id"]
    # History rows do not carry the strip (only the bed's latest does).
    assert client.get("/api/beds/bed-1/scores").json()[1]["strip_mv"] == []
    time.sleep(0.5)  # more than 2 x hop_s without a score
    stale = client.get("/api/beds/bed-1").json()
    assert (stale["status"], stale["stale"]) == ("stale", True) and stale["age_s"] > 0.4
    assert client.get("/api/beds/bed-9").status_code == 404
    assert client.get("/api/beds/bed-9/events").status_code == 404


def test_scores_page_by_cursor_and_time_range(client: TestClient, feed: Feed, make_score: ScoreFactory) -> None:
    feed(client, [make_score(f"bed-{b}", 100.0 + i) for b in (1, 2) for i in range(5)])
    seen: list[tuple[str, float]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/scores", params=params).json()
        seen += [(s["bed_id"], s["window_end_s"]) for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 10 and len(set(seen)) == 10
    assert [t for _, t in seen] == sorted((t for _, t in seen), reverse=True)
    ranged = client.get("/api/scores", params={"bed_id": "bed-2", "since_s": 101.0, "until_s": 103.0}).json()
    assert [s["window_end_s"] for s in ranged["items"]] == [103.0, 102.0]
    assert client.get("/api/scores", params={"cursor": "garbage"}).status_code == 422
    assert client.get("/api/beds/bed-1/scores", params={"until_s": 102.0, "limit": 2}).json()[0]["window_end_s"] == 102


def test_trends_are_relative_to_each_beds_latest_window(
    client: TestClient, feed: Feed, make_score: ScoreFactory
) -> None:
    feed(client, [make_score("bed-1", 1000.0 + 600 * i, risk=0.1 * i) for i in range(8)]
         + [make_score("bed-1", 5300.0, state="unscorable", risk=None, reason="noise")])
    (trend,) = client.get("/api/trends").json()
    assert trend["window_end_s"] == [1000.0 + 600 * i for i in range(2, 8)] + [5300.0]
    assert trend["risk"][-1] is None and trend["state"][-1] == "unscorable"
    assert len(client.get("/api/trends", params={"window_s": 700}).json()[0]["risk"]) == 2


def test_alert_events_are_pushed_over_the_websocket(
    client: TestClient, feed: Feed, make_score: ScoreFactory, login: Callable[..., dict[str, str]]
) -> None:
    with client.websocket_connect("/ws/scores") as ws:
        assert ws.receive_json()["type"] == "snapshot"
        feed(client, [make_score("bed-5", 10.0 + 5 * i, risk=0.9) for i in range(3)])
        messages = [ws.receive_json() for _ in range(4)]
        assert [m["type"] for m in messages] == ["score", "score", "score", "alert"]
        raised = messages[-1]
        assert raised["event"]["kind"] == "raised" and raised["alert"]["bed_id"] == "bed-5"
        ack = client.post(f"/api/alerts/{raised['alert']['id']}/acknowledge", headers=login(client, "clinician", "cy"))
        assert ack.status_code == 200 and [e["kind"] for e in ack.json()["events"]] == ["raised", "acknowledged"]
        pushed = ws.receive_json()
        assert (pushed["type"], pushed["event"]["kind"], pushed["alert"]["acknowledged_by"]) == (
            "alert", "acknowledged", "cy")
    with client.websocket_connect("/ws/scores") as ws:
        snapshot = ws.receive_json()
        assert [a["id"] for a in snapshot["alerts"]] == [raised["alert"]["id"]]
    events = client.get("/api/beds/bed-5/events").json()
    assert [(e["kind"], e["actor"]) for e in events] == [("raised", None), ("acknowledged", "cy")]
    assert client.post("/api/alerts/999/acknowledge", headers=ADMIN).status_code == 404


def test_ensemble_metrics_and_ui_config(client: TestClient, feed: Feed, make_score: ScoreFactory) -> None:
    feed(client, [make_score("bed-1", 100.0, models=("rr-af@1",)), make_score("bed-1", 110.0, models=("cnn@2",)),
                  make_score("bed-2", 100.0, state="unscorable", risk=None, reason="noise", models=())])
    ensemble = client.get("/api/ensemble").json()
    assert (ensemble["windows_scored"], ensemble["windows_unscorable"], ensemble["windows_lost"]) == (2, 1, 1)
    # Selection changes come from the workers' plans (none here); a bed's members changing is provenance.
    assert (ensemble["selection_changes"], ensemble["provenance_changes"]) == (0, 1)
    assert ensemble["throughput_windows_per_s"] > 0
    assert {m["model"] for m in ensemble["served_models"]} == {"rr-af@1", "cnn@2"}
    assert ensemble["latency"]["n"] == 3 and ensemble["latency"]["histogram"]["+Inf"] == 3
    for field in ("selection", "budget_ms", "predicted_vs_measured_latency", "replans"):
        assert ensemble[field]["available"] is False and "plans topic" in ensemble[field]["reason"]
    assert ensemble["dead_letters"]["state"] == "disabled"
    text = client.get("/metrics").text
    for line in ('holmes_windows_total{status="ok"} 2.0', 'holmes_windows_total{status="unscorable"} 1.0',
                 "holmes_windows_lost_total 1.0", "holmes_bed_model_changes_total 1.0",
                 "holmes_score_latency_seconds_count 3.0", "holmes_scores_received_total 0.0",
                 'holmes_http_request_duration_seconds_count{method="GET",route="/api/ensemble",status="200"} 1.0'):
        assert line in text, line
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    config = client.get("/api/ui-config").json()
    assert (config["hop_s"], config["stale_after_s"], config["alert_threshold"]) == (5.0, 10.0, 0.7)


def test_retention_purges_old_history(
    client_factory: Callable[[ApiConfig], TestClient], sqlite_url: str, feed: Feed, make_score: ScoreFactory
) -> None:
    client = client_factory(app_config(sqlite_url, score_retention_s=60.0, retention_interval_s=0.1))
    now = time.time()
    feed(client, [make_score("bed-1", now - 120), make_score("bed-1", now)])
    deadline = time.monotonic() + 5
    while len(client.get("/api/beds/bed-1/scores").json()) != 1:
        assert time.monotonic() < deadline, "retention did not run"
        time.sleep(0.05)


def test_dead_letters_are_parsed_without_their_payload() -> None:
    letter = parse_letter(json.dumps({"v": 1, "reason": "truncated", "detail": "x" * 900, "topic": "t.waveforms",
                                      "partition": 3, "offset": 41, "payload_bytes": 9, "payload_b64": "AAAA",
                                      "received_at_s": 12.5}).encode())
    assert (letter.reason, letter.partition, letter.offset, letter.payload_bytes) == ("truncated", 3, 41, 9)
    assert letter.detail is not None and len(letter.detail) == 300 and "payload_b64" not in letter.model_dump()
    assert parse_letter(b"\xff not json").reason == "unparseable"
    assert parse_letter(b'{"reason": "<script>"}').reason == "other"


@pytest.mark.integration
def test_dead_letters_are_counted_from_the_topic(
    kafka_bootstrap: str, topics_factory: Callable[..., Topics],
    client_factory: Callable[[ApiConfig], TestClient], sqlite_url: str,
) -> None:
    from kafka import KafkaProducer

    topics = topics_factory()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        for reason in ("truncated", "truncated", "bad-magic"):
            producer.send(topics.deadletter.name, json.dumps({"v": 1, "reason": reason, "offset": 1}).encode())
        producer.send(topics.deadletter.name, b"garbage")
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)
    client = client_factory(app_config(sqlite_url, kafka_bootstrap=kafka_bootstrap, scores_topic=topics.scores.name,
                                       deadletter_topic=topics.deadletter.name,
                                       consumer_group=f"g-{uuid.uuid4().hex[:8]}"))
    deadline = time.monotonic() + 30
    while (body := client.get("/api/deadletters").json())["total"] < 4:
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
    assert body["by_reason"] == {"truncated": 2, "bad-magic": 1, "unparseable": 1}
    assert body["state"] == "running" and body["recent"][0]["reason"] == "unparseable"
    assert 'holmes_dead_letters_total{reason="truncated"} 2.0' in client.get("/metrics").text
