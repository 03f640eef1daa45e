"""The Kafka sender keys every chunk by its bed, counts failed deliveries and connects only when asked."""

from __future__ import annotations

import importlib
import socket
from collections.abc import Callable
from typing import Any

import pytest

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
