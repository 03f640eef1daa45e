"""Kafka output for the simulator: a kafka-python producer and a ``send(bed_id, payload)`` keyed by bed."""

from __future__ import annotations

import logging
import socket
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from simulator.errors import SimulatorError

log = logging.getLogger(__name__)


def _check_reachable(bootstrap: str, timeout_s: float) -> None:
    """Raise unless one bootstrap address accepts a TCP connection."""
    errors = []
    for address in filter(None, (a.strip() for a in bootstrap.split(","))):
        host, colon, port = address.rpartition(":")
        host, port = (host, port) if colon else (address, "9092")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return
        except (OSError, ValueError) as exc:
            errors.append(f"{address}: {exc}")
    raise SimulatorError(f"cannot reach a Kafka broker at {bootstrap!r} ({'; '.join(errors) or 'no address'})")


def make_producer(
    bootstrap: str, *, client_id: str = "holmes-simulator", connect_timeout_s: float = 5.0, **overrides: Any
) -> KafkaProducer:
    """A producer for waveform chunks (acks=1, linger 5 ms); connects when called, never at import."""
    # kafka-python leaks its sockets when the bootstrap fails inside the constructor: fail earlier, cleanly.
    _check_reachable(bootstrap, connect_timeout_s)
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "acks": 1,
        # At-least-once: idempotent producers are not supported by the embedded broker (BROKER.md).
        "enable_idempotence": False,
        "linger_ms": 5,
        "batch_size": 64 * 1024,
        # One request in flight, so that a retried batch cannot overtake the next one of the same bed.
        "max_in_flight_requests_per_connection": 1,
        "retries": 3,
    }
    options.update(overrides)
    try:
        return KafkaProducer(**options)
    except KafkaError as exc:
        raise SimulatorError(f"cannot reach a Kafka broker at {bootstrap!r}: {exc}") from exc


class KafkaSend:
    """``send(bed_id, payload)`` onto one topic, keyed by the bed id so a bed's chunks stay on one partition."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.failed = 0
        self.last_error: BaseException | None = None

    def __call__(self, bed_id: str, payload: bytes) -> None:
        future = self.producer.send(self.topic, key=bed_id.encode("utf-8"), value=payload)
        future.add_errback(self._on_error, bed_id)

    def _on_error(self, bed_id: str, exc: BaseException) -> None:
        self.failed += 1
        self.last_error = exc
        log.warning("chunk of %s to %s not delivered: %s", bed_id, self.topic, exc)

    def flush(self, timeout_s: float | None = 30.0) -> None:
        """Wait until everything sent so far is acknowledged (or failed)."""
        flush_producer(self.producer, timeout_s)

    def close(self, timeout_s: float | None = 10.0) -> None:
        """Flush, then close the producer."""
        close_producer(self.producer, timeout_s)


def kafka_sender(producer: KafkaProducer, topic: str) -> KafkaSend:
    """A ``send(bed_id, payload)`` for :class:`simulator.replay.Simulator` that produces to ``topic``."""
    if not topic:
        raise SimulatorError("the waveform topic name is empty")
    return KafkaSend(producer, topic)


def flush_producer(producer: KafkaProducer, timeout_s: float | None = 30.0) -> None:
    """Flush a producer; a timeout becomes a :class:`SimulatorError`."""
    try:
        producer.flush(timeout=timeout_s)
    except KafkaError as exc:
        raise SimulatorError(f"Kafka flush did not complete within {timeout_s} s: {exc}") from exc


def close_producer(producer: KafkaProducer, timeout_s: float | None = 10.0) -> None:
    """Flush and close a producer, never raising on the way out."""
    try:
        producer.flush(timeout=timeout_s)
    except KafkaError as exc:
        log.warning("Kafka flush on close failed: %s", exc)
    finally:
        producer.close(timeout=timeout_s)
