"""Per-worker scoring-queue depth on /metrics, from the ``extra`` of the scores the consumer receives."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from api.metrics import WORKER_FORGET_S, Metrics
from ingest.schemas import ScoreRecord

from .conftest import app_config

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

Feed = Callable[["TestClient", list[ScoreRecord]], int]
ScoreFactory = Callable[..., ScoreRecord]

_SAMPLE = re.compile(r'^(holmes_worker_queue_depth(?:_max)?)\{worker="((?:[^"\\]|\\.)*)"\} (\S+)$')


def depths(text: str) -> dict[str, dict[str, float]]:
    """``{metric: {worker: value}}`` of the queue-depth gauges in an exposition text."""
    out: dict[str, dict[str, float]] = {"holmes_worker_queue_depth": {}, "holmes_worker_queue_depth_max": {}}
    for line in text.splitlines():
        if match := _SAMPLE.match(line):
            out[match[1]][match[2]] = float(match[3])
    return out


def scored(make_score: ScoreFactory, worker: str | None, depth: object, at_s: float, **fields: object) -> ScoreRecord:
    extra: dict[str, object] = {"plan_id": 1, "measured_ms": 250.0}
    if worker is not None:
        extra["worker_id"] = worker
    if depth is not None:
        extra["queue_depth"] = depth
    return make_score(f"bed-{at_s:g}", at_s, scored_at_s=at_s + 0.1, extra=extra, **fields)


def test_metrics_export_each_workers_last_and_highest_queue_depth(
    client_factory: Callable[..., TestClient], sqlite_url: str, feed: Feed, make_score: ScoreFactory
) -> None:
    client = client_factory(app_config(sqlite_url))
    text = client.get("/metrics").text
    assert "# TYPE holmes_worker_queue_depth gauge" in text
    assert "# TYPE holmes_worker_queue_depth_max gauge" in text
    assert depths(text) == {"holmes_worker_queue_depth": {}, "holmes_worker_queue_depth_max": {}}

    feed(client, [scored(make_score, "host-a:1", 4, 100.0), scored(make_score, "host-a:1", 17, 105.0),
                  scored(make_score, "host-b:2", 0, 100.0), scored(make_score, "host-a:1", 9, 110.0)])
    text = client.get("/metrics").text
    assert "# HELP holmes_worker_queue_depth " in text and "# HELP holmes_worker_queue_depth_max " in text
    assert depths(text) == {
        "holmes_worker_queue_depth": {"host-a:1": 9.0, "host-b:2": 0.0},
        "holmes_worker_queue_depth_max": {"host-a:1": 17.0, "host-b:2": 0.0},
    }

    # A replayed (older) score raises the high-water mark but does not move the last depth back.
    feed(client, [scored(make_score, "host-a:1", 40, 101.0), scored(make_score, "host-b:2", 2, 120.0)])
    assert depths(client.get("/metrics").text) == {
        "holmes_worker_queue_depth": {"host-a:1": 9.0, "host-b:2": 2.0},
        "holmes_worker_queue_depth_max": {"host-a:1": 40.0, "host-b:2": 2.0},
    }


def test_scores_without_a_usable_worker_or_depth_are_ignored(
    client_factory: Callable[..., TestClient], sqlite_url: str, feed: Feed, make_score: ScoreFactory
) -> None:
    client = client_factory(app_config(sqlite_url))
    feed(client, [
        scored(make_score, None, 3, 100.0),  # no worker id
        scored(make_score, "host-a:1", None, 101.0),  # no depth
        scored(make_score, "host-a:1", "7", 102.0),  # a string is no depth
        scored(make_score, "host-a:1", -1, 103.0),  # nor is a negative number
        scored(make_score, "", 5, 104.0),
        scored(make_score, "host-c:3", 6, 105.0, window_s=0.0),  # rejected by the api's checks: never counted
    ])
    assert depths(client.get("/metrics").text) == {"holmes_worker_queue_depth": {},
                                                   "holmes_worker_queue_depth_max": {}}
    assert client.get("/readyz").json()["rejected"] == 1


def test_silent_workers_are_forgotten_and_the_number_tracked_is_capped(make_score: ScoreFactory) -> None:
    now = [1000.0]
    metrics = Metrics(clock=lambda: now[0])
    metrics.observe_workers([scored(make_score, "old", 50, 1.0), scored(make_score, "busy", 3, 2.0)])
    now[0] += WORKER_FORGET_S - 1
    metrics.observe_workers([scored(make_score, "busy", 4, 3.0)])
    assert depths(metrics.render().decode())["holmes_worker_queue_depth"] == {"old": 50.0, "busy": 4.0}

    now[0] += 2  # "old" has been silent for longer than WORKER_FORGET_S, "busy" has not
    assert depths(metrics.render().decode()) == {"holmes_worker_queue_depth": {"busy": 4.0},
                                                 "holmes_worker_queue_depth_max": {"busy": 4.0}}
    # Heard from again: it starts over, its earlier high-water mark forgotten with it.
    metrics.observe_workers([scored(make_score, "old", 1, 4.0)])
    assert depths(metrics.render().decode())["holmes_worker_queue_depth_max"] == {"busy": 4.0, "old": 1.0}

    metrics.worker_queues.max_workers = 3
    for i in range(10):
        now[0] += 1
        metrics.observe_workers([scored(make_score, f"w{i}", i, 10.0 + i)])
    # The workers heard from least recently went first.
    assert depths(metrics.render().decode())["holmes_worker_queue_depth"] == {"w7": 7.0, "w8": 8.0, "w9": 9.0}


def test_a_long_or_odd_worker_id_is_a_bounded_escaped_label(make_score: ScoreFactory) -> None:
    metrics = Metrics()
    metrics.observe_workers([scored(make_score, "x" * 1000, 1, 1.0), scored(make_score, 'a"b\\c\nd', 2, 2.0)])
    workers = depths(metrics.render().decode())["holmes_worker_queue_depth"]
    assert workers == {"x" * 200: 1.0, 'a\\"b\\\\c\\nd': 2.0}
