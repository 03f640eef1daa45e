"""Broadcast hub for WebSocket clients: one bounded queue per client, a slow client loses its oldest messages."""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Subscription:
    """One client's queue; ``get`` returns ``None`` once the subscription is closed."""

    def __init__(self, hub: Hub, maxlen: int) -> None:
        self._hub = hub
        self._queue: deque[str] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def put(self, message_json: str) -> None:
        """Queue a message, dropping the oldest one when the queue is full."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            self._hub.dropped += 1
        self._queue.append(message_json)
        self._ready.set()

    async def get(self) -> str | None:
        """The oldest queued message, waiting for one; ``None`` when closed."""
        while not self._queue:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def close(self) -> None:
        """Stop the subscription; a waiting ``get`` returns ``None``, queued messages are discarded."""
        self.closed = True
        self._queue.clear()
        self._ready.set()
        self._hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Hub:
    """Fans each published message out to every subscriber without ever waiting on one of them."""

    def __init__(self, queue_size: int = 256) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, not {queue_size}")
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self.published = 0
        self.dropped = 0

    @property
    def clients(self) -> int:
        """Number of open subscriptions."""
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        """A new subscription; use it as a context manager so that it is always closed."""
        sub = Subscription(self, self.queue_size)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscription (``Subscription.close`` calls this)."""
        self._subscribers.discard(sub)

    def publish(self, message_json: str) -> int:
        """Queue a message for every subscriber (call from the event loop); returns the number of subscribers."""
        self.published += 1
        for sub in self._subscribers:
            sub.put(message_json)
        return len(self._subscribers)

    def close(self) -> None:
        """Close every subscription (at shutdown)."""
        for sub in list(self._subscribers):
            sub.close()
