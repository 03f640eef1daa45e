"""holmes.procs.freeze_heap: what a serving process has loaded leaves the collector's reach, garbage does not."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from holmes.procs import freeze_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def frozen() -> Iterator[int]:
    try:
        yield freeze_heap("test")
    finally:
        gc.unfreeze()


def test_a_full_collection_no_longer_walks_what_was_loaded(frozen: int) -> None:
    kept = [Node() for _ in range(10_000)]  # loaded at start and kept, like a zoo or a WFDB record index
    assert {id(n) for n in kept} <= {id(o) for o in gc.get_objects()}  # a collection walks them
    assert freeze_heap("test") >= frozen + len(kept)
    assert not {id(n) for n in kept} & {id(o) for o in gc.get_objects()}  # now none of them
    assert kept[0].other is None  # still there


def test_garbage_made_after_the_freeze_is_still_collected(frozen: int) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the cyclic collector frees it
    alive = weakref.ref(a)
    del a, b
    gc.collect()
    assert alive() is None and frozen > 0
