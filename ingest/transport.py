"""A Faust transport whose worker consumer's fetch wait is configurable.

Faust hard-codes ``fetch_max_wait_ms=1500`` for the worker consumer. Brokers that hold an empty fetch for a
good part of that wait (the embedded Tansu broker holds it for about half, see ``../shared/BROKER.md``) then
add up to 0.75 s to every window. This subclass sets the wait from :class:`HolmesApp`'s setting.
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


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


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """The aiokafka transport with a configurable worker fetch wait."""

    Consumer = _Consumer


class HolmesApp(faust.App):
    """A Faust app that uses :class:`Transport` for its consumer."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
