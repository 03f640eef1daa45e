"""Feature extraction in a child process gives the in-process features exactly, and outlives its child."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

import features
from ensemble.feature_process import FeatureProcess
from models.data import mitdb_windows


@pytest.fixture(scope="module")
def windows(data_dir: Path) -> list[np.ndarray]:
    """Real 10-s windows of record 201 (sinus rhythm and AF), one with a lead off."""
    signals = [w.signal_mv for w in mitdb_windows(data_dir, "201", 10.0, 10.0)][:12]
    flat = signals[0].copy()
    flat[0] = 0.0
    return [*signals, flat]


def _same(a: list[features.WindowFeatures], b: list[features.WindowFeatures]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.quality == y.quality and x.heart_rate_bpm == y.heart_rate_bpm
        np.testing.assert_array_equal(x.r_peaks, y.r_peaks)
        np.testing.assert_array_equal(x.rr_vector, y.rr_vector)


def test_the_child_computes_what_the_worker_would(windows: list[np.ndarray]) -> None:
    extract = FeatureProcess()
    try:
        _same(extract(windows, 250.0), features.extract_batch(windows, 250.0))
        assert extract([], 250.0) == []
    finally:
        extract.close()


def test_a_killed_child_is_replaced_and_its_batch_extracted_here(windows: list[np.ndarray]) -> None:
    extract = FeatureProcess()
    try:
        extract(windows[:1], 250.0)  # the child is up
        for pid in list(extract._pool._processes):  # noqa: SLF001 (the child, to kill it as the OOM killer would)
            os.kill(pid, signal.SIGKILL)
        _same(extract(windows, 250.0), features.extract_batch(windows, 250.0))  # no window lost
        _same(extract(windows[:2], 250.0), features.extract_batch(windows[:2], 250.0))  # the new child
    finally:
        extract.close()


def test_the_child_freezes_what_it_loaded_out_of_the_garbage_collector(windows: list[np.ndarray]) -> None:
    import gc

    extract = FeatureProcess()
    try:
        extract(windows[:1], 250.0)
        # numpy, scipy and features were loaded before the freeze: tens of thousands of objects that a full
        # collection no longer walks; cyclic garbage made afterwards is still collected
        assert extract._pool.submit(gc.get_freeze_count).result() > 20_000  # noqa: SLF001
        assert extract._pool.submit(gc.collect).result() >= 0  # noqa: SLF001
    finally:
        extract.close()
