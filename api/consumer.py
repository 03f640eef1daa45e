"""Kafka consumer of the scores topic: broadcast each score at once, store batches, then commit offsets."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import operator
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from api.alerts import AlertChange
from api.config import ApiConfig
from api.db import ScoreStore, WriteOutcome
from api.hub import Hub
from api.metrics import Metrics
from api.schemas import AlertEventPublic, AlertMessage, AlertPublic, ConsumerState, ScoreMessage, ScorePublic
from ingest.codec import decode_score
from ingest.errors import DecodeError
from ingest.schemas import ScoreRecord

log = logging.getLogger(__name__)

_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(ScoreRecord))
_record_values = operator.attrgetter(*_RECORD_FIELDS)

#: Most records taken from one fetch, so that broadcasting them never holds the event loop for long.
MAX_RECORDS_PER_FETCH = 500
#: How long ``stop`` waits for queued writes (and their offset commits) before giving up on them.
DRAIN_TIMEOUT_S = 5.0


class Message(Protocol):
    """What the consumer needs of a Kafka record (``aiokafka.ConsumerRecord`` has it)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


@dataclass(slots=True)
class ConsumerStats:
    """Counters since start; ``rejected`` scores decoded but failed the api's checks (NaN, bad bed id...)."""

    received: int = 0
    undecodable: int = 0
    rejected: int = 0
    written: int = 0
    duplicates: int = 0
    write_errors: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class _Pending:
    """Scores of one fetch waiting for the database, and the offsets to commit once they are stored."""

    records: list[ScoreRecord]
    offsets: dict[TopicPartition, int]
    received_at_s: float


class _Backoff:
    """Doubling delay between retries, from ``first_s`` up to ``max_s``."""

    def __init__(self, max_s: float, first_s: float = 0.25) -> None:
        self.max_s = max_s
        self.delay_s = first_s

    async def sleep(self) -> None:
        await asyncio.sleep(self.delay_s)
        self.delay_s = min(self.delay_s * 2, self.max_s)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel a consumer's task and wait until it has run its clean-up."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class TopicTail:
    """Reads one topic from its start without a consumer group, hands every record once to :meth:`on_records`,
    and reconnects with backoff (the dead-letter and plan monitors).

    Subclasses set ``topic``, ``bootstrap``, ``fetch_max_wait_ms``, ``backoff_max_s``, ``_task = None``,
    ``_running = False`` and ``_next_offset = {}``, and define ``state``, :meth:`on_records` and :meth:`set_error`.
    """

    name = "topic"
    topic: str | None
    bootstrap: str | None
    fetch_max_wait_ms: int
    backoff_max_s: float
    _task: asyncio.Task[None] | None
    _running: bool
    _next_offset: dict[int, int]

    @property
    def state(self) -> ConsumerState:
        raise NotImplementedError

    async def on_records(self, messages: list[Message]) -> None:
        """Records of one partition not seen before, in offset order."""
        raise NotImplementedError

    def set_error(self, error: str | None) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        if self.state == "disabled" or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.create_task(self._run(), name=f"holmes-api-{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await _cancel(task)

    async def _run(self) -> None:
        backoff = _Backoff(self.backoff_max_s)
        while True:
            consumer = AIOKafkaConsumer(
                self.topic, bootstrap_servers=self.bootstrap, group_id=None, client_id=f"holmes-api-{self.name}",
                enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=self.fetch_max_wait_ms,
            )
            try:
                await consumer.start()
                self._running = True
                self.set_error(None)
                while True:
                    batches = await consumer.getmany(timeout_ms=1_000, max_records=500)
                    for tp, messages in batches.items():
                        # After a reconnect the topic is read again from the start: handle each record once.
                        fresh = [m for m in messages if m.offset >= self._next_offset.get(tp.partition, 0)]
                        if fresh:
                            self._next_offset[tp.partition] = fresh[-1].offset + 1
                            await self.on_records(fresh)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                self.set_error(f"kafka: {exc}")
                log.warning("%s topic %s not readable (%s); retrying in %.2f s", self.name, self.topic, exc,
                            backoff.delay_s)
            except Exception as exc:
                self.set_error(f"{type(exc).__name__}: {str(exc)[:200]}")
                log.exception("%s monitor failed; restarting in %.2f s", self.name, backoff.delay_s)
            finally:
                self._running = False
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await backoff.sleep()


def alert_message(change: AlertChange, sent_at_s: float) -> str:
    """The WebSocket message of an alert event."""
    return AlertMessage(alert=AlertPublic.model_validate(change.alert), event=AlertEventPublic.model_validate(
        change.event), sent_at_s=sent_at_s).model_dump_json()


class ScoreConsumer:
    """Reads the scores topic; every score reaches the hub before it reaches the database.

    Alerts are evaluated while the scores are stored (``ScoreStore.write``), and their events are broadcast once
    that transaction has committed.
    """

    def __init__(
        self, config: ApiConfig, store: ScoreStore, hub: Hub, *, metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.stats = ConsumerStats()
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._running = False

    @property
    def state(self) -> ConsumerState:
        """``disabled`` without a Kafka bootstrap, ``starting`` until the consumer has joined, then ``running``."""
        if self.config.kafka_bootstrap is None:
            return "disabled"
        if self._task is None or self._task.done():
            return "stopped"
        return "running" if self._running else "starting"

    def decode(self, messages: Iterable[Message]) -> list[ScoreRecord]:
        """Decode raw messages; undecodable ones are counted, logged with their position and skipped."""
        records = []
        for message in messages:
            self.stats.received += 1
            try:
                if message.value is None:
                    raise DecodeError("empty", "message has no value")
                records.append(decode_score(message.value))
            except Exception as exc:  # noqa: BLE001 - one bad message must never stop the consumer
                self.stats.undecodable += 1
                log.warning(
                    "undecodable score at %s[%d]@%d: %s",
                    message.topic, message.partition, message.offset,
                    exc if isinstance(exc, DecodeError) else f"{type(exc).__name__}: {str(exc)[:200]}",
                )
        return records

    def accept(self, records: Iterable[ScoreRecord], received_at_s: float) -> list[ScoreRecord]:
        """Check each score and broadcast the good ones at once; returns them as checked records."""
        good = []
        publish = self.hub.publish
        for record in records:
            # A flat dict: ``dataclasses.asdict`` deep-copied the 200-value strip value by value, the largest
            # cost per score (pydantic copies ``extra`` and the lists while validating anyway).
            body = dict(zip(_RECORD_FIELDS, _record_values(record), strict=True))
            body["received_at_s"] = received_at_s
            try:
                score = ScorePublic.model_validate(body)
            except ValidationError as exc:
                self.stats.rejected += 1
                log.warning("rejected score for bed %r: %s", record.bed_id, str(exc)[:300])
                continue
            # Serialised once here; every WebSocket client is sent the same string.
            publish(ScoreMessage(score=score, sent_at_s=self._clock()).model_dump_json())
            good.append(score.to_record())
        if self.metrics is not None and good:
            self.metrics.observe_workers(good)
        return good

    async def handle_batch(self, records: Sequence[ScoreRecord]) -> int:
        """Check, broadcast and store scores as the Kafka loop does, without Kafka; returns rows inserted."""
        received_at_s = self._clock()
        return await self._write(self.accept(records, received_at_s), received_at_s)

    async def handle_messages(self, messages: Sequence[Message]) -> int:
        """Decode raw messages, then ``handle_batch`` them; returns rows inserted."""
        return await self.handle_batch(self.decode(messages))

    async def _write(self, records: Sequence[ScoreRecord], received_at_s: float) -> int:
        if not records:
            return 0
        outcome: WriteOutcome = await asyncio.to_thread(self.store.write, records, received_at_s)
        inserted = len(outcome.inserted)
        self.stats.written += inserted
        self.stats.duplicates += len(records) - inserted
        if self.metrics is not None:
            self.metrics.record_write(outcome, received_at_s)
        for change in outcome.alerts:
            log.info("alert %d of bed %s %s (risk %s)", change.alert.id, change.alert.bed_id, change.event.kind,
                     change.event.risk)
            self.hub.publish(alert_message(change, self._clock()))
        return inserted

    async def start(self) -> None:
        """Start consuming in a background task; it retries until the broker answers."""
        if self.config.kafka_bootstrap is None:
            raise RuntimeError("no kafka_bootstrap configured")
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.create_task(self._run(self.config.kafka_bootstrap), name="holmes-api-consumer")

    async def stop(self) -> None:
        """Stop consuming; queued writes get ``DRAIN_TIMEOUT_S`` to finish and commit."""
        task, self._task = self._task, None
        await _cancel(task)

    async def _connect(self, bootstrap: str) -> AIOKafkaConsumer:
        backoff = _Backoff(self.config.connect_backoff_max_s)
        while True:
            consumer = AIOKafkaConsumer(
                self.config.scores_topic,
                bootstrap_servers=bootstrap,
                group_id=self.config.consumer_group,
                client_id="holmes-api",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=self.config.fetch_max_wait_ms,
                # A long session makes the first join slow on the embedded broker (BROKER.md).
                session_timeout_ms=10_000,
                heartbeat_interval_ms=3_000,
            )
            try:
                await consumer.start()
            except asyncio.CancelledError:
                await consumer.stop()
                raise
            except (KafkaError, OSError) as exc:
                await consumer.stop()
                self.stats.last_error = f"kafka: {exc}"
                log.warning("Kafka at %s not ready (%s); retrying in %.2f s", bootstrap, exc, backoff.delay_s)
                await backoff.sleep()
                continue
            log.info("consuming %s as group %s", self.config.scores_topic, self.config.consumer_group)
            return consumer

    async def _run(self, bootstrap: str) -> None:
        backoff = _Backoff(self.config.connect_backoff_max_s)
        while True:
            try:
                await self._consume(bootstrap)
            except Exception as exc:
                self.stats.last_error = f"consumer: {type(exc).__name__}: {str(exc)[:200]}"
                log.exception("score consumer failed; restarting in %.2f s", backoff.delay_s)
                await backoff.sleep()

    async def _consume(self, bootstrap: str) -> None:
        consumer = await self._connect(bootstrap)
        queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=self.config.write_queue_batches)
        writer = asyncio.create_task(self._write_loop(consumer, queue), name="holmes-api-writer")
        self._running = True
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=1_000, max_records=MAX_RECORDS_PER_FETCH)
                if not batches:
                    continue
                received_at_s = self._clock()
                records: list[ScoreRecord] = []
                offsets: dict[TopicPartition, int] = {}
                for tp, messages in batches.items():
                    records.extend(self.accept(self.decode(messages), received_at_s))
                    offsets[tp] = messages[-1].offset + 1
                if writer.done():
                    writer.result()
                # Blocks when the database falls behind, which stops fetching instead of growing memory.
                await queue.put(_Pending(records, offsets, received_at_s))
        finally:
            self._running = False
            if not writer.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.join(), DRAIN_TIMEOUT_S)
                writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await consumer.stop()

    async def _write_loop(self, consumer: AIOKafkaConsumer, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            pending = [await queue.get()]
            while not queue.empty():
                pending.append(queue.get_nowait())
            offsets: dict[TopicPartition, int] = {}
            for batch in pending:
                await self._write_until_stored(batch)
                offsets.update(batch.offsets)
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                # The scores are stored; after a rebalance the new owner re-reads them and the insert ignores them.
                log.warning("offset commit failed (%s); scores may be re-read and deduplicated", exc)
            for _ in pending:
                queue.task_done()

    async def _write_until_stored(self, batch: _Pending) -> None:
        backoff = _Backoff(self.config.connect_backoff_max_s)
        while True:
            try:
                await self._write(batch.records, batch.received_at_s)
                return
            except Exception as exc:
                # Offsets are committed only after the write, so the batch is retried, never skipped.
                self.stats.write_errors += 1
                self.stats.last_error = f"database: {type(exc).__name__}: {str(exc)[:200]}"
                log.warning("writing %d scores failed (%s); retrying in %.2f s",
                            len(batch.records), self.stats.last_error, backoff.delay_s,
                            exc_info=not isinstance(exc, SQLAlchemyError))
                await backoff.sleep()
