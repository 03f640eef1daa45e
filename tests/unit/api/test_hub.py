"""Broadcast hub: fan-out, drop-oldest for slow clients, closing."""

from __future__ import annotations

import asyncio

import pytest

from api.hub import Hub


def test_publish_reaches_every_subscriber_in_order() -> None:
    async def run() -> None:
        hub = Hub(queue_size=8)
        with hub.subscribe() as a, hub.subscribe() as b:
            assert hub.clients == 2
            assert hub.publish("one") == 2
            hub.publish("two")
            assert [await a.get(), await a.get()] == ["one", "two"]
            assert [await b.get(), await b.get()] == ["one", "two"]
        assert hub.clients == 0
        assert hub.publish("nobody listens") == 0

    asyncio.run(run())


def test_a_slow_subscriber_loses_its_oldest_messages_and_nobody_else_does() -> None:
    async def run() -> None:
        hub = Hub(queue_size=3)
        with hub.subscribe() as slow, hub.subscribe() as fast:
            for i in range(5):
                hub.publish(str(i))
                assert await fast.get() == str(i)
            assert [await slow.get() for _ in range(3)] == ["2", "3", "4"]
            assert (slow.dropped, fast.dropped, hub.dropped) == (2, 0, 2)

    asyncio.run(run())


def test_get_waits_for_a_message_and_returns_none_once_closed() -> None:
    async def run() -> None:
        hub = Hub()
        sub = hub.subscribe()
        waiting = asyncio.create_task(sub.get())
        await asyncio.sleep(0)
        assert not waiting.done()
        hub.publish("late")
        assert await asyncio.wait_for(waiting, 1) == "late"

        waiting = asyncio.create_task(sub.get())
        await asyncio.sleep(0)
        hub.close()
        assert await asyncio.wait_for(waiting, 1) is None
        assert hub.clients == 0

    asyncio.run(run())


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        Hub(queue_size=0)
