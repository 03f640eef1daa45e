"""The Kafka sender keys every chunk by its bed, counts failed deliveries and connects only when asked."""

from __future__ import annotations

import importlib
import socket
from collections.abc import Callable
from typing import Any

import pytest

import simulator.kafka
from simulator.errors import SimulatorError
from simulator.kafka import close_producer, kafka_sender, make_producer


class FakeFuture:
    def __init__(self) -> None:
        self.errbacks: list[Callable[[BaseException], None]] = []

    def add_errback(self, f: Callable[..., None], *args: Any) -> FakeFuture:
        self.errbacks.append(lambda exc: f(*args, exc))
        return self


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.futures: list[FakeFuture] = []
        self.calls: list[str] = []

    def send(self, topic: str, *, key: bytes, value: bytes) -> FakeFuture:
        self.sent.append((topic, key, value))
        self.futures.append(FakeFuture())
        return self.futures[-1]

    def partitions_for(self, topic: str) -> set[int]:
        self.calls.append("partitions_for")
        return {0}

    def flush(self, timeout: float | None = None) -> None:
        self.calls.append("flush")

    def close(self, timeout: float | None = None) -> None:
        self.calls.append("close")


def test_sender_keys_by_bed_id_on_one_topic() -> None:
    producer = FakeProducer()
    send = kafka_sender(producer, "holmes.waveforms")
    send("bed-001", b"a")
    send("bed-002", b"b")
    send("bed-001", b"c")
    assert producer.sent == [
        ("holmes.waveforms", b"bed-001", b"a"),
        ("holmes.waveforms", b"bed-002", b"b"),
        ("holmes.waveforms", b"bed-001", b"c"),
    ]


def test_failed_deliveries_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    producer = FakeProducer()
    send = kafka_sender(producer, "t")
    send("bed-007", b"x")
    producer.futures[0].errbacks[0](TimeoutError("broker gone"))
    assert send.failed == 1 and isinstance(send.last_error, TimeoutError)
    assert "bed-007" in caplog.text


def test_close_flushes_then_closes() -> None:
    producer = FakeProducer()
    close_producer(producer)
    assert producer.calls == ["flush", "close"]


def test_empty_topic_is_refused() -> None:
    with pytest.raises(SimulatorError, match="topic"):
        kafka_sender(FakeProducer(), "")


def test_importing_opens_no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a connection was opened at import time")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    import simulator.kafka

    importlib.reload(simulator.kafka)


def test_unreachable_broker_is_a_simulator_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(SimulatorError, match=f"cannot reach a Kafka broker at '127.0.0.1:{port}'"):
            make_producer(f"127.0.0.1:{port}", connect_timeout_s=0.5)


class FakeSender:
    """kafka-python's I/O thread as the producer sees it: ``wakeup()`` on every record that opens a batch."""

    def __init__(self) -> None:
        self.wakeups = 0

    def wakeup(self) -> None:
        self.wakeups += 1


class WakingProducer(FakeProducer):
    def __init__(self) -> None:
        super().__init__()
        self._sender = FakeSender()

    def send(self, topic: str, *, key: bytes, value: bytes) -> FakeFuture:
        self._sender.wakeup()
        return super().send(topic, key=key, value=value)


def test_send_many_sends_in_order_and_wakes_the_io_thread_once() -> None:
    producer = WakingProducer()
    send = kafka_sender(producer, "t")
    send.send_many([("bed-001", b"a"), ("bed-002", b"b"), ("bed-001", b"c")])
    assert producer.sent == [("t", b"bed-001", b"a"), ("t", b"bed-002", b"b"), ("t", b"bed-001", b"c")]
    assert producer._sender.wakeups == 1
    assert "wakeup" not in vars(producer._sender), "the sender's own wakeup is back"
    send("bed-003", b"d")
    assert producer._sender.wakeups == 2, "single sends wake it as before"
    send.send_many([])
    assert producer._sender.wakeups == 2 and producer.calls == ["partitions_for"]


def test_send_many_restores_wakeups_when_a_send_fails() -> None:
    producer = WakingProducer()
    send = kafka_sender(producer, "t")

    def boom(topic: str, *, key: bytes, value: bytes) -> FakeFuture:
        producer._sender.wakeup()
        raise ValueError("record too large")

    producer.send = boom  # type: ignore[method-assign]
    with pytest.raises(ValueError):
        send.send_many([("bed-001", b"a")])
    assert "wakeup" not in vars(producer._sender) and producer._sender.wakeups == 1


def test_send_many_works_with_a_producer_without_an_io_thread() -> None:
    producer = FakeProducer()
    kafka_sender(producer, "t").send_many([("bed-001", b"a"), ("bed-002", b"b")])
    assert [key for _, key, _ in producer.sent] == [b"bed-001", b"bed-002"]


def test_producer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, object]] = []
    monkeypatch.setattr(simulator.kafka, "_check_reachable", lambda bootstrap, timeout_s: None)
    monkeypatch.setattr(simulator.kafka, "KafkaProducer", lambda **options: made.append(options) or options)
    make_producer("broker:9092", linger_ms=7)
    make_producer("broker:9092")
    assert made[0]["linger_ms"] == 7 and made[1]["linger_ms"] == 0
    assert made[1]["acks"] == 1 and made[1]["max_in_flight_requests_per_connection"] == 1
