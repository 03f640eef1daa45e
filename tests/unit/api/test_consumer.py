"""ScoreConsumer: decoding, checks, broadcast before storage; and the real broker end to end."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import TopicPartition
from sqlalchemy.exc import OperationalError

from api import ApiConfig
from api.consumer import ScoreConsumer, _Pending
from api.db import ScoreStore, WriteOutcome, make_engine
from api.hub import Hub
from api.tables import init_db
from ingest.codec import encode_score
from ingest.schemas import ScoreRecord
from ingest.topics import Topics

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

RawFactory = Callable[..., Any]


@pytest.fixture
def consumer(sqlite_url: str) -> Iterator[ScoreConsumer]:
    engine = make_engine(sqlite_url)
    init_db(engine)
    yield ScoreConsumer(ApiConfig(database_url=sqlite_url), ScoreStore(engine), Hub(queue_size=64))
    engine.dispose()


def test_handle_batch_broadcasts_then_stores(
    consumer: ScoreConsumer, make_score: Callable[..., ScoreRecord]
) -> None:
    records = [make_score("bed-1"), make_score("bed-2", state="unscorable", risk=None, reason="flat line")]

    async def run() -> list[str]:
        with consumer.hub.subscribe() as sub:
            assert await consumer.handle_batch(records) == 2
            assert await consumer.handle_batch(records) == 0
            return [m for m in [await sub.get() for _ in range(4)] if m is not None]

    messages = [json.loads(m) for m in asyncio.run(run())]
    assert [m["type"] for m in messages] == ["score"] * 4
    first = messages[0]["score"]
    assert first["bed_id"] == "bed-1"
    assert first["models"] == ["cnn1d", "hrv-gbm"]
    assert first["received_at_s"] <= messages[0]["sent_at_s"]
    assert messages[1]["score"]["reason"] == "flat line"
    assert consumer.store.count() == 2
    assert (consumer.stats.written, consumer.stats.duplicates) == (2, 2)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe\x00",
        b'{"v": 2, "bed_id": "bed-1"}',
        b'{"v": 1, "bed_id": "bed-1"}',
        b'{"v": 1, "bed_id": "bed-1", "window_end_s": 1, "window_s": 30, "state": "ok", "colour": "red"}',
        b"[" * 100_000,
        None,
    ],
    ids=["text", "binary", "schema-2", "missing-fields", "unknown-field", "deep-nesting", "tombstone"],
)
def test_an_undecodable_message_is_counted_and_skipped(
    consumer: ScoreConsumer, make_score: Callable[..., ScoreRecord], make_raw: RawFactory, payload: bytes | None
) -> None:
    good = make_raw(encode_score(make_score()), offset=2)
    written = asyncio.run(consumer.handle_messages([make_raw(payload, offset=1), good]))
    assert written == 1
    assert (consumer.stats.received, consumer.stats.undecodable, consumer.stats.rejected) == (2, 1, 0)


@pytest.mark.parametrize(
    "changes",
    [
        {"risk": "NaN"},
        {"risk": 1.5},
        {"window_end_s": "Infinity"},
        {"window_end_s": "soon"},
        {"window_s": 0},
        {"state": "maybe"},
        {"bed_id": "bed 1; DROP TABLE scores"},
        {"extra": {"x": [1, 2]}},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_decodable_but_invalid_score_is_rejected_not_stored(
    consumer: ScoreConsumer, make_score: Callable[..., ScoreRecord], make_raw: RawFactory, changes: dict[str, object]
) -> None:
    body = json.loads(encode_score(make_score()))
    body.update(changes)
    # json.dumps writes float("nan") as NaN, which json.loads (and so decode_score) accepts.
    raw = json.dumps({k: float(v) if v in ("NaN", "Infinity") else v for k, v in body.items()}).encode()

    assert asyncio.run(consumer.handle_messages([make_raw(raw)])) == 0
    assert consumer.hub.published == 0
    # Refused by the codec's checks (undecodable) or by the API's own stricter model (rejected), once.
    assert consumer.stats.undecodable + consumer.stats.rejected == 1
    assert consumer.store.count() == 0


def test_a_numeric_string_is_refused_not_coerced(
    consumer: ScoreConsumer, make_score: Callable[..., ScoreRecord], make_raw: RawFactory
) -> None:
    body = json.loads(encode_score(make_score(window_end_s=123.0)))
    body["risk"] = "0.25"
    asyncio.run(consumer.handle_messages([make_raw(json.dumps(body).encode())]))
    assert consumer.stats.undecodable == 1 and consumer.store.count() == 0


def test_offsets_are_committed_only_after_the_scores_are_stored(
    consumer: ScoreConsumer, make_score: Callable[..., ScoreRecord]
) -> None:
    events: list[str] = []
    store = consumer.store
    failures = iter([OperationalError("INSERT", {}, Exception("database is down"))])

    def flaky_write(records: Sequence[ScoreRecord], received_at_s: float) -> WriteOutcome:
        error = next(failures, None)
        events.append("write failed" if error else "write")
        if error:
            raise error
        return ScoreStore.write(store, records, received_at_s)

    class Kafka:
        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            events.append(f"commit {sorted(offsets.values())}")

    store.write = flaky_write  # type: ignore[method-assign]
    tp = TopicPartition("t.scores", 0)

    async def run() -> None:
        queue: asyncio.Queue[_Pending] = asyncio.Queue()
        writer = asyncio.create_task(consumer._write_loop(Kafka(), queue))
        await queue.put(_Pending([make_score()], {tp: 5}, received_at_s=1.0))
        await asyncio.wait_for(queue.join(), 5)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    asyncio.run(run())
    assert events == ["write failed", "write", "commit [5]"]
    assert (consumer.stats.write_errors, consumer.stats.written) == (1, 1)
    assert consumer.stats.last_error is not None and "database is down" in consumer.stats.last_error


def test_state_without_kafka_is_disabled(consumer: ScoreConsumer) -> None:
    assert consumer.state == "disabled"
    with pytest.raises(RuntimeError, match="kafka_bootstrap"):
        asyncio.run(consumer.start())


@pytest.mark.integration
# kafka-python 3 loads its protocol schemas with the deprecated importlib.resources.read_text at import.
def test_scores_flow_from_the_broker_to_the_database_and_a_websocket(
    kafka_bootstrap: str,
    topics_factory: Callable[..., Topics],
    client_factory: Callable[[ApiConfig], TestClient],
    sqlite_url: str,
    make_score: Callable[..., ScoreRecord],
) -> None:
    from kafka import KafkaProducer

    topics = topics_factory()
    config = ApiConfig(
        database_url=sqlite_url,
        kafka_bootstrap=kafka_bootstrap,
        scores_topic=topics.scores.name,
        consumer_group=f"holmes-api-{uuid.uuid4().hex[:8]}",
    )
    client = client_factory(config)
    now = time.time()
    records = [make_score(f"bed-{i % 3}", window_end_s=now - 10 + i) for i in range(9)]

    with client.websocket_connect("/ws/scores") as ws:
        snapshot = ws.receive_json()
        assert (snapshot["type"], snapshot["beds"], snapshot["alerts"]) == ("snapshot", [], [])
        assert snapshot["sent_at_s"] == pytest.approx(now, abs=60)
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
        try:
            for record in records:
                producer.send(topics.scores.name, key=record.bed_id.encode(), value=encode_score(record))
            producer.send(topics.scores.name, key=b"bed-0", value=b"garbage")
            producer.flush(timeout=30)
        finally:
            producer.close(timeout=5)

        deadline = time.monotonic() + 60
        ready = client.get("/readyz").json()
        while ready["written"] < len(records) or ready["undecodable"] < 1:
            assert time.monotonic() < deadline, f"scores did not arrive: {ready}"
            time.sleep(0.1)
            ready = client.get("/readyz").json()
        assert ready["ready"] is True and ready["consumer"] == "running"
        assert (ready["written"], ready["undecodable"], ready["rejected"]) == (9, 1, 0)

        # Every score was broadcast before it was written, so all nine are already queued for this client.
        live = [ws.receive_json() for _ in records]
    assert {m["type"] for m in live} == {"score"}
    assert sorted((m["score"]["bed_id"], m["score"]["window_end_s"]) for m in live) == sorted(
        (r.bed_id, r.window_end_s) for r in records
    )
    beds = client.get("/api/beds").json()
    assert [b["bed_id"] for b in beds] == ["bed-0", "bed-1", "bed-2"]
    assert [b["latest"]["window_end_s"] for b in beds] == [r.window_end_s for r in records[-3:]]


def test_the_checked_score_keeps_every_field_of_the_record(make_score: Callable[..., ScoreRecord]) -> None:
    import dataclasses

    from api.schemas import ScoreBase, ScorePublic

    record = make_score(reason="r", complete=False, extra={"a": 1, "b": None, "c": "x", "d": 2.5}, strip_hz=50.0,
                        strip_mv=(0.1, -0.2), seq_last=3)
    assert set(ScoreBase.model_fields) == {f.name for f in dataclasses.fields(ScoreRecord)}
    score = ScorePublic.model_validate({**dataclasses.asdict(record), "received_at_s": 1.0})
    assert score.to_record() == record
    assert score.to_record().extra is not score.extra
