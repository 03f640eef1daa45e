"""The batch executor batches what is waiting, keeps order, bounds its queue and survives failures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from ensemble.errors import EnsembleError
from ensemble.executor import BatchExecutor, QueueFull


def test_items_waiting_together_run_in_one_batch_in_order() -> None:
    batches: list[list[int]] = []
    delivered: list[tuple[int, int]] = []
    loop_thread: list[int] = []

    def square(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        loop_thread.append(threading.get_ident())
        return [i * i for i in items]

    async def deliver(item: int, result: int) -> None:
        delivered.append((item, result))

    async def main() -> int:
        ex: BatchExecutor[int, int] = BatchExecutor(square, deliver, max_batch=64)
        for i in range(100):
            ex.submit(i)
        await ex.start()
        await ex.stop()
        return threading.get_ident()

    main_thread = asyncio.run(main())
    assert delivered == [(i, i * i) for i in range(100)]
    assert [len(b) for b in batches] == [64, 36]
    assert main_thread not in loop_thread  # inference never runs on the event loop's thread


def test_queue_is_bounded() -> None:
    async def main() -> None:
        ex: BatchExecutor[int, int] = BatchExecutor(lambda xs: list(xs), _noop, max_queue=3)
        for i in range(3):
            ex.submit(i)
        with pytest.raises(QueueFull):
            ex.submit(4)
        await ex.start()
        await ex.stop()

    asyncio.run(main())


def test_a_failing_batch_is_counted_and_the_next_one_still_runs() -> None:
    delivered: list[int] = []
    failed: list[tuple[int, str]] = []
    calls = 0

    def flaky(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model crashed")
        return list(items)

    async def deliver(item: int, result: int) -> None:
        delivered.append(result)

    async def fail(item: int, exc: BaseException) -> None:
        failed.append((item, str(exc)))

    async def main() -> BatchExecutor[int, int]:
        ex: BatchExecutor[int, int] = BatchExecutor(flaky, deliver, fail)
        await ex.start()
        ex.submit(1)
        await asyncio.sleep(0.05)
        ex.submit(2)
        await ex.stop()
        return ex

    ex = asyncio.run(main())
    assert ex.failures == 1 and delivered == [2] and failed == [(1, "model crashed")]


async def _noop(item: int, result: int) -> None:
    return None


def test_per_request_mode_runs_one_item_per_call_and_offline_mode_waits_for_the_period() -> None:
    calls: list[list[int]] = []

    def record(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        return list(items)

    async def run(**kwargs: object) -> list[list[int]]:
        calls.clear()
        ex: BatchExecutor[int, int] = BatchExecutor(record, _noop, **kwargs)  # type: ignore[arg-type]
        await ex.start()
        for i in range(10):
            ex.submit(i)
        await ex.stop()
        assert ex.items == 10 and ex.busy_s > 0
        return list(calls)

    assert asyncio.run(run(max_batch=1)) == [[i] for i in range(10)]
    assert asyncio.run(run(period_s=0.2)) == [list(range(10))]  # held to the boundary, then one job
    assert asyncio.run(run(period_s=0.2, max_batch=4)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(EnsembleError):
        BatchExecutor(record, _noop, period_s=0.0)


def test_the_event_loop_time_per_delivered_item_is_measured() -> None:
    async def slow_deliver(item: int, result: int) -> None:
        time.sleep(0.002)  # the work a publication does on the event loop (encoding, the producer)

    async def main() -> BatchExecutor[int, int]:
        ex: BatchExecutor[int, int] = BatchExecutor(lambda xs: list(xs), slow_deliver, max_batch=8)
        assert ex.deliver_ms is None
        for i in range(16):
            ex.submit(i)
        await ex.start()
        await ex.stop()
        return ex

    ex = asyncio.run(main())
    assert [n for n, _ in ex.deliver_recent] == [8, 8]
    assert ex.deliver_ms is not None and ex.deliver_ms >= 2.0
