"""A Faust transport with a configurable worker fetch wait and exact offset commits.

Faust hard-codes ``fetch_max_wait_ms=1500`` for the worker consumer. Brokers that hold an empty fetch for a
good part of that wait (the embedded Tansu broker holds it for about half, see ``../shared/BROKER.md``) then
add up to 0.75 s to every window. This subclass sets the wait from :class:`HolmesApp`'s setting.

Faust commits the offset of a message once every stream has acked it. The worker needs another rule (an
offset is safe only once the scores of the windows it completed are on the broker and no bed's ring buffer
needs it any more, see :mod:`ingest.worker`), so it consumes its topic with acks off and commits offsets it
computes itself through :meth:`HolmesApp.commit_exact`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiokafka
import faust
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger(__name__)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # aiokafka reads this when it builds its fetcher at start(), which has not happened yet.
            if not hasattr(consumer, "_fetch_max_wait_ms"):
                raise RuntimeError("this aiokafka version does not keep _fetch_max_wait_ms; update ingest.transport")
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer

    async def commit_exact(self, offsets: Mapping[TP, int]) -> dict[TP, int]:
        """Commit ``offsets`` (next offset to read) on the consumer's own thread; returns what was committed."""
        result: dict[TP, int] = await self.call_thread(self._commit_exact, offsets)
        return result

    async def _commit_exact(self, offsets: Mapping[TP, int]) -> dict[TP, int]:
        consumer = self._ensure_consumer()
        assigned = consumer.assignment()
        mine = {tp: offset for tp, offset in offsets.items() if TopicPartition(tp.topic, tp.partition) in assigned}
        if not mine:
            return {}
        try:
            await consumer.commit({TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(offset, "")
                                   for tp, offset in mine.items()})
        except (KafkaError, OSError) as exc:
            # Unlike Faust's own commit, a failure never crashes the worker: the offsets stay where they
            # were, so at worst a restart re-reads a little more.
            log.warning("offset commit of %d partitions failed (%s: %s); retried at the next interval",
                        len(mine), type(exc).__name__, exc)
            return {}
        return mine


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def commit_exact(self, offsets: Mapping[TP, int]) -> dict[TP, int]:
        """See :meth:`HolmesApp.commit_exact`."""
        thread = self._thread
        if not isinstance(thread, _ConsumerThread):  # pragma: no cover - built by _new_consumer_thread
            raise RuntimeError("the consumer thread is not holmes' own")
        return await thread.commit_exact(offsets)


class Transport(faust_aiokafka.Transport):
    """The aiokafka transport with a configurable worker fetch wait and exact commits."""

    Consumer = _Consumer


class HolmesApp(faust.App):
    """A Faust app that uses :class:`Transport` for its consumer."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)

    async def commit_exact(self, offsets: Mapping[TP, int]) -> dict[TP, int]:
        """Commit exactly these offsets (the next offset to read, per partition) for partitions still assigned.

        Returns the offsets committed; empty when none could be (not assigned, a rebalance under way, the
        broker unreachable). Meant for topics consumed with ``acks=False``, whose offsets Faust never commits.
        """
        consumer = self.consumer
        if not isinstance(consumer, _Consumer):  # pragma: no cover - built by Transport
            raise RuntimeError("the consumer is not holmes' own")
        return await consumer.commit_exact(offsets)
