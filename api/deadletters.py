"""Reads the dead-letter topic for the operations page: counts by reason and the last few letters.

It reads every partition from the earliest offset without a consumer group, so the counts cover what the topic
still holds (its retention), also after the api restarts. The payload (the original bytes) is never kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter, deque
from typing import Any

from api.consumer import Message, TopicTail
from api.metrics import Metrics
from api.schemas import ConsumerState, DeadLetterPublic, DeadLettersPublic

log = logging.getLogger(__name__)

_REASON = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
#: Reasons beyond this many distinct ones are counted as ``other`` (a bounded label set for Prometheus).
MAX_REASONS = 64


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_letter(value: bytes | None) -> DeadLetterPublic:
    """A dead letter as the worker writes it (``ingest.worker.deadletter_record``); anything else is ``unparseable``."""
    try:
        body = json.loads(value or b"")
        if not isinstance(body, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return DeadLetterPublic(reason="unparseable", detail=None, topic=None, partition=None, offset=None,
                                payload_bytes=len(value or b""), received_at_s=None)
    reason = body.get("reason")
    received = body.get("received_at_s")
    return DeadLetterPublic(
        reason=reason if isinstance(reason, str) and _REASON.match(reason) else "other",
        detail=str(body.get("detail"))[:300] if body.get("detail") is not None else None,
        topic=str(body.get("topic"))[:255] if body.get("topic") is not None else None,
        partition=_int_or_none(body.get("partition")),
        offset=_int_or_none(body.get("offset")),
        payload_bytes=_int_or_none(body.get("payload_bytes")),
        received_at_s=float(received) if isinstance(received, int | float) and not isinstance(received, bool)
        else None,
    )


class DeadLetterMonitor(TopicTail):
    """Counts dead letters by reason and keeps the most recent ones."""

    def __init__(self, bootstrap: str | None, topic: str | None, metrics: Metrics, keep: int = 20,
                 fetch_max_wait_ms: int = 100, backoff_max_s: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.metrics = metrics
        self.by_reason: Counter[str] = Counter()
        self.recent: deque[DeadLetterPublic] = deque(maxlen=keep)
        self.total = 0
        self.last_error: str | None = None
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.backoff_max_s = backoff_max_s
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._next_offset: dict[int, int] = {}

    @property
    def state(self) -> ConsumerState:
        if self.bootstrap is None or self.topic is None:
            return "disabled"
        if self._task is None or self._task.done():
            return "stopped"
        return "running" if self._running else "starting"

    def add(self, value: bytes | None) -> DeadLetterPublic:
        """Count one letter."""
        letter = parse_letter(value)
        reason = letter.reason if letter.reason in self.by_reason or len(self.by_reason) < MAX_REASONS else "other"
        self.by_reason[reason] += 1
        self.total += 1
        self.metrics.dead_letters.labels(reason).inc()
        self.recent.append(letter)
        return letter

    def snapshot(self) -> DeadLettersPublic:
        return DeadLettersPublic(state=self.state, topic=self.topic, total=self.total, by_reason=dict(self.by_reason),
                                 recent=list(reversed(self.recent)), last_error=self.last_error)

    async def on_records(self, messages: list[Message]) -> None:
        for message in messages:
            self.add(message.value)

    def set_error(self, error: str | None) -> None:
        self.last_error = error
