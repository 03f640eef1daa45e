"""Batched execution off the event loop: items due together are scored in one call on a worker thread.

Three ways to run, the ``holmes bench --mode`` choices:

* ``batched`` (the default): whenever the thread is free, everything waiting (up to ``max_batch``) goes in
  one call, so windows that fall due in the same tick are batched across beds;
* ``per-request``: ``max_batch=1``, one window per call (HOLMES served one request per patient per model);
* ``offline``: ``period_s`` set: items wait for the next period boundary and everything waiting is then
  scored in batches, as a periodic batch job would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from ensemble.errors import EnsembleError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(EnsembleError):
    """The executor's bounded queue is full; the caller decides what to do with the item."""


class BatchExecutor(Generic[T, R]):
    """Collects submitted items and runs ``fn`` over everything that is waiting, ``max_batch`` at a time.

    ``fn`` runs on a dedicated thread so the Kafka consumer loop never blocks on model inference;
    ``deliver`` is awaited on the event loop for every (item, result) pair in submission order. When ``fn``
    raises, ``fail`` is awaited for every item of that batch, so no item silently disappears.
    """

    def __init__(
        self,
        fn: Callable[[Sequence[T]], Sequence[R]],
        deliver: Callable[[T, R], Awaitable[None]],
        fail: Callable[[T, BaseException], Awaitable[None]] | None = None,
        max_batch: int = 256,
        max_queue: int = 20_000,
        threads: int = 1,
        period_s: float | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or (period_s is not None and period_s <= 0):
            raise EnsembleError(f"invalid executor bounds: max_batch={max_batch} max_queue={max_queue} "
                                f"period_s={period_s}")
        self._fn = fn
        self._deliver = deliver
        self._fail = fail
        self.max_batch = max_batch
        self.period_s = period_s
        self.max_queue = max_queue
        self._queue: asyncio.Queue[T] = asyncio.Queue(max_queue)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="holmes-exec")
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0
        self.failures = 0
        #: seconds the thread spent in ``fn`` (capacity = items / busy_s)
        self.busy_s = 0.0
        self.max_depth = 0
        #: seconds the event loop spent in ``deliver`` for the batches of ``deliver_recent`` (the last 64
        #: batches of more than one item: (items, seconds)); the next batch waits for it
        self.deliver_recent: deque[tuple[int, float]] = deque(maxlen=64)

    @property
    def deliver_ms(self) -> float | None:
        """The event loop's ms per delivered item over the recent batches (None before any of two or more)."""
        items = sum(n for n, _ in self.deliver_recent)
        return 1000.0 * sum(s for _, s in self.deliver_recent) / items if items else None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, item: T) -> None:
        """Queue an item without waiting; raises :class:`QueueFull` when the bound is reached."""
        try:
            self._queue.put_nowait(item)
            self.max_depth = max(self.max_depth, self._queue.qsize())
        except asyncio.QueueFull as exc:
            raise QueueFull(f"executor queue holds {self._queue.maxsize} items") from exc

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="holmes-batch-executor")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._pool.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if self.period_s is None:
                await self._run_batch(first, limit=self.max_batch)
                continue
            # offline: wait for the period boundary, then score everything that is waiting
            await asyncio.sleep(self.period_s - time.time() % self.period_s)
            due = 1 + self._queue.qsize()
            due -= await self._run_batch(first, limit=due)
            while due > 0 and not self._queue.empty():
                due -= await self._run_batch(self._queue.get_nowait(), limit=due)

    async def _run_batch(self, first: T, limit: int) -> int:
        """Score ``first`` and what waits behind it (at most ``min(limit, max_batch)`` items); returns how many."""
        loop = asyncio.get_running_loop()
        batch = [first]
        while len(batch) < min(limit, self.max_batch) and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._pool, self._fn, batch)
            self.busy_s += time.perf_counter() - started
            if len(results) != len(batch):
                raise EnsembleError(f"{len(results)} results for {len(batch)} items")
        except Exception as exc:
            self.failures += len(batch)
            log.exception("batch of %d items failed", len(batch))
            if self._fail is not None:
                for item in batch:
                    await self._fail(item, exc)
        else:
            self.batches += 1
            self.items += len(batch)
            delivering = time.perf_counter()
            for item, result in zip(batch, results, strict=True):
                await self._deliver(item, result)
            if len(batch) > 1:
                self.deliver_recent.append((len(batch), time.perf_counter() - delivering))
        finally:
            for _ in batch:
                self._queue.task_done()
        return len(batch)
