"""Kafka output for the simulator: a kafka-python producer and a ``send(bed_id, payload)`` keyed by bed."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence
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
    """A producer for waveform chunks (acks=1, no linger); connects when called, never at import.

    The simulator hands the producer a slot's chunks in one burst (:meth:`KafkaSend.send_many`) and wakes its
    I/O thread once, after the burst: a linger would only hold the burst back (it was 5 ms when chunks came
    one by one). With one request in flight, chunks queued while a request is out go together in the next.
    """
    # kafka-python leaks its sockets when the bootstrap fails inside the constructor: fail earlier, cleanly.
    _check_reachable(bootstrap, connect_timeout_s)
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "acks": 1,
        # At-least-once: idempotent producers are not supported by the embedded broker (BROKER.md).
        "enable_idempotence": False,
        "linger_ms": 0,
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

    def send_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Send ``(bed_id, payload)`` pairs as one burst (what :class:`simulator.replay.Simulator` does per slot).

        Each record that opens a new batch on a partition wakes the producer's I/O thread, which then takes
        the GIL from the sending thread and runs a full send loop for that one record. In a burst the wake-ups
        are held back until its last record is queued, then given once: one send loop (and one produce
        request) per burst instead of one per partition touched.
        """
        if not items:
            return
        # the topic's metadata must be known: fetching it waits on the I/O thread, which must then be wakeable
        self.producer.partitions_for(self.topic)
        with _wakeups_deferred(self.producer):
            for bed_id, payload in items:
                self(bed_id, payload)

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


@contextlib.contextmanager
def _wakeups_deferred(producer: KafkaProducer) -> Iterator[None]:
    """Hold back the wake-ups that ``producer.send`` gives kafka-python's I/O thread (its ``Sender``), and give
    one on the way out if any was asked for. A producer without that shape (another client, a fake) is left
    alone."""
    sender = getattr(producer, "_sender", None)
    wakeup = getattr(sender, "wakeup", None)
    if not callable(wakeup) or "wakeup" in getattr(sender, "__dict__", {"wakeup": None}):
        yield
        return
    asked: list[bool] = []
    sender.wakeup = lambda: asked.append(True)  # type: ignore[union-attr]
    try:
        yield
    finally:
        del sender.wakeup  # type: ignore[union-attr]
        if asked:
            wakeup()


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
