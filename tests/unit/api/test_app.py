"""The app without Kafka: REST routes, probes, the live page and the WebSocket feed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from api import ApiConfig, create_app
from api.errors import ConfigError
from ingest.broker import free_port
from ingest.codec import encode_score
from ingest.schemas import ScoreRecord

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

Feed = Callable[["TestClient", list[ScoreRecord]], int]


def test_create_app_opens_no_connection() -> None:
    create_app(ApiConfig(database_url="postgresql://nobody@127.0.0.1:1/none", kafka_bootstrap="127.0.0.1:1"))


@pytest.mark.parametrize(
    "changes",
    [{"fetch_max_wait_ms": 0}, {"ws_queue_size": 0}, {"write_queue_batches": 0}, {"scores_topic": ""}],
)
def test_config_refuses_values_out_of_range(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ApiConfig(**changes)  # type: ignore[arg-type]


def test_probes_without_kafka(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert (body["ready"], body["database"], body["consumer"]) == (True, "ok", "disabled")
    assert body["scores_received"] == body["written"] == body["ws_clients"] == body["ws_dropped"] == 0


def test_readyz_is_503_while_kafka_is_unreachable(
    client_factory: Callable[[ApiConfig], TestClient], sqlite_url: str
) -> None:
    client = client_factory(ApiConfig(database_url=sqlite_url, kafka_bootstrap=f"127.0.0.1:{free_port()}"))
    deadline = time.monotonic() + 10
    while (body := client.get("/readyz").json())["last_error"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.get("/readyz").status_code == 503
    assert (body["ready"], body["consumer"]) == (False, "starting")
    assert body["last_error"].startswith("kafka:")
    assert client.get("/healthz").status_code == 200


def test_beds_lists_the_latest_score_per_bed(
    client: TestClient, feed: Feed, make_score: Callable[..., ScoreRecord]
) -> None:
    assert client.get("/api/beds").json() == []
    feed(client, [make_score("bed-10", 100.0), make_score("bed-2", 100.0), make_score("bed-2", 130.0, risk=0.9)])
    feed(client, [make_score("bed-2", 120.0, risk=0.1)])  # late, older window

    beds = client.get("/api/beds").json()
    assert [b["bed_id"] for b in beds] == ["bed-10", "bed-2"]
    latest = beds[1]["latest"]
    assert (latest["window_end_s"], latest["risk"], latest["state"]) == (130.0, 0.9, "ok")
    assert set(latest) >= {
        "bed_id", "window_end_s", "window_s", "state", "risk", "reason", "quality", "heart_rate_bpm",
        "complete", "models", "scored_at_s", "received_at_s",
    }
    assert beds[1]["first_seen_s"] <= beds[1]["last_seen_s"]


def test_bed_scores_newest_first_with_limit_and_since(
    client: TestClient, feed: Feed, make_score: Callable[..., ScoreRecord]
) -> None:
    feed(client, [make_score("bed-1", 100.0 + i) for i in range(5)])

    scores = client.get("/api/beds/bed-1/scores").json()
    assert [s["window_end_s"] for s in scores] == [104.0, 103.0, 102.0, 101.0, 100.0]
    scores = client.get("/api/beds/bed-1/scores", params={"limit": 2}).json()
    assert [s["window_end_s"] for s in scores] == [104.0, 103.0]
    scores = client.get("/api/beds/bed-1/scores", params={"since_s": 102.0}).json()
    assert [s["window_end_s"] for s in scores] == [104.0, 103.0]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/beds/bed-404/scores", 404),
        ("/api/beds/bad%20id/scores", 422),
        ("/api/beds/bed-1/scores?limit=0", 422),
        ("/api/beds/bed-1/scores?limit=100000", 422),
        ("/api/beds/bed-1/scores?since_s=nan", 422),
    ],
)
def test_bed_scores_refuses_bad_requests(
    client: TestClient, feed: Feed, make_score: Callable[..., ScoreRecord], path: str, status: int
) -> None:
    feed(client, [make_score("bed-1")])
    assert client.get(path).status_code == status


def test_websocket_sends_a_snapshot_then_live_scores(
    client: TestClient, feed: Feed, make_score: Callable[..., ScoreRecord]
) -> None:
    feed(client, [make_score("bed-1", 100.0, risk=0.2), make_score("bed-1", 101.0, risk=0.3)])
    with client.websocket_connect("/ws/scores") as ws:
        snapshot = ws.receive_json()
        assert snapshot["type"] == "snapshot"
        assert isinstance(snapshot["sent_at_s"], float)
        assert [(b["bed_id"], b["latest"]["window_end_s"]) for b in snapshot["beds"]] == [("bed-1", 101.0)]
        assert client.get("/readyz").json()["ws_clients"] == 1

        feed(client, [make_score("bed-2", 200.0, state="unscorable", risk=None, reason="leads off")])
        message = ws.receive_json()
        assert message["type"] == "score"
        assert message["sent_at_s"] >= message["score"]["received_at_s"]
        score = message["score"]
        assert (score["bed_id"], score["window_end_s"], score["state"]) == ("bed-2", 200.0, "unscorable")
        assert (score["risk"], score["reason"]) == (None, "leads off")
    deadline = time.monotonic() + 5
    while client.get("/readyz").json()["ws_clients"] != 0:
        assert time.monotonic() < deadline, "the subscription outlived its WebSocket"
        time.sleep(0.01)


def test_a_bad_payload_is_counted_and_the_feed_goes_on(
    client: TestClient, make_score: Callable[..., ScoreRecord], make_raw: Callable[..., Any]
) -> None:
    consumer = client.app.state.services.consumer  # type: ignore[attr-defined]
    messages = [
        make_raw(b'{"v": 1, "bed_id": "bed-1", "oops"', offset=1),
        make_raw(encode_score(make_score()), offset=2),
    ]
    with client.websocket_connect("/ws/scores") as ws:
        assert ws.receive_json()["beds"] == []
        assert client.portal is not None
        assert client.portal.call(consumer.handle_messages, messages) == 1
        assert ws.receive_json()["score"]["bed_id"] == "bed-1"
    body = client.get("/readyz").json()
    assert (body["ready"], body["scores_received"], body["undecodable"], body["written"]) == (True, 2, 1, 1)


def test_dashboard_page_and_its_assets_are_served_without_any_cdn(client: TestClient) -> None:
    for path in ("/", "/beds/bed-1", "/alerts", "/models", "/ensemble", "/admin"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
        assert "default-src 'self'" in page.headers["content-security-policy"]
    page = client.get("/").text
    assets = ["/static/app.js", "/static/style.css"] + [
        f"/static/js/{name}.js" for name in ("core", "charts", "grid", "bed", "alerts", "ops", "admin")]
    texts = [page]
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        texts.append(response.text)
    assert "/static/app.js" in page and "/ws/scores" in client.get("/static/js/core.js").text
    assert not any("https://" in text or "http://" in text for text in texts)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-static/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text
    assert client.get("/docs-static/swagger-ui-bundle.js").status_code == 200
    assert client.get("/redoc").status_code == 404
