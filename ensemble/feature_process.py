"""Feature extraction in a child process, off the worker's GIL.

:func:`features.extract_batch` is numpy work on 2,500-sample arrays: it gives the GIL up and takes it back
thousands of times a batch. In the worker's process every take waits behind the event loop (decoding chunks,
publishing scores) and the Kafka consumer's thread, so at 1,000 beds a batch's features ran 3.7x their idle
cost while the machine had most of a core free (measured, ``holmes bench --beds 1000``). In a child process
the same work runs on that core; what it costs on top is pickling the windows there and the features back.
The child is spawned (not forked: the worker has threads) and dies with its parent. Once it has imported
what it needs it freezes that out of the garbage collector (as the worker does, ``holmes.procs.freeze_heap``):
a full collection walks every object alive, numpy's and scipy's included, and a feature batch allocates
enough to trigger them (a 34 ms pause was seen in a child that did not).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

import features

__all__ = ["FeatureProcess", "die_with_parent"]

log = logging.getLogger(__name__)


def die_with_parent() -> None:
    """SIGTERM this process when its parent dies, even by SIGKILL (Linux ``PR_SET_PDEATHSIG``; elsewhere a
    no-op, and the pool's shutdown stops the child)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def _init_child() -> None:
    """The feature child's start: die with the parent; what is loaded now (this module imported ``features``,
    numpy and scipy) is frozen out of the cyclic garbage collector, so its full collections stay short."""
    die_with_parent()
    gc.collect()
    gc.freeze()


class FeatureProcess:
    """``features.extract_batch`` in one child process: call it as the function itself.

    A child that died (killed, out of memory) is replaced; the batch it was given is extracted here meanwhile,
    so no window is lost to it.
    """

    def __init__(self) -> None:
        self._pool = self._start()

    @staticmethod
    def _start() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_child)

    def __call__(self, signals: Sequence[np.ndarray], fs_hz: float) -> list[features.WindowFeatures]:
        if not signals:
            return []
        try:
            return self._pool.submit(features.extract_batch, list(signals), fs_hz).result()
        except (BrokenProcessPool, OSError) as exc:
            log.warning("the feature process failed (%s); extracting here, and starting a new one", exc)
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
            return features.extract_batch(signals, fs_hz)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
