"""Window tables on real records: grid, padding, labels from the annotations, patient-wise splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data import mitdb_windows
from models.splits import cinc_split, mitdb_split
from models.windows import FS_HZ, PAD_SAMPLES, SignalStore, WindowTable, build_tables, window_ends


def test_window_ends_lie_on_the_grid() -> None:
    assert window_ends(7500, 2500, 2500) == [2500, 5000, 7500]
    assert window_ends(8000, 7500, 2500) == [7500]
    assert window_ends(7600, 2500, 1250) == [2500, 3750, 5000, 6250, 7500]
    # Shorter than the window: one window ending at the last sample (zero-padded at its start).
    assert window_ends(6000, 7500, 2500) == [6000]


@pytest.fixture(scope="module")
def mitdb_tables(data_dir: Path) -> tuple[SignalStore, dict[int, WindowTable]]:
    return build_tables(data_dir, "mitdb", records=["201", "219", "100"])


@pytest.fixture(scope="module")
def cinc_tables(data_dir: Path) -> tuple[SignalStore, dict[int, WindowTable]]:
    # A00004 (A, 30 s), A00002 (N, 30 s), A00015 (A, 20 s): short records get a padded window.
    return build_tables(data_dir, "cinc", records=["A00002", "A00004", "A00015"])


def test_mitdb_labels_match_the_rhythm_annotations(
    mitdb_tables: tuple[SignalStore, dict[int, WindowTable]], data_dir: Path
) -> None:
    store, tables = mitdb_tables
    table = tables[10]
    assert store.n_leads == 2 and store.signal.dtype == np.float32
    for record in ("201", "219"):  # 201 is train (5-s grid), 219 validation (10-s grid)
        reference = {round(w.start_s * FS_HZ): w for w in mitdb_windows(data_dir, record, 10.0, 5.0)}
        rows = np.flatnonzero(table.record == record)
        assert rows.size > 0
        for i in rows:
            ref = reference[int(table.start[i])]
            assert table.label[i] == int(ref.af) and table.straddles[i] == ref.straddles_change
            np.testing.assert_array_equal(store.windows(table.row[[i]], table.start[[i]], 2500)[0], ref.signal_mv)
    assert table.label[table.record == "201"].sum() >= 30
    assert table.label[table.record == "100"].sum() == 0


def test_grids_and_splits(mitdb_tables: tuple[SignalStore, dict[int, WindowTable]]) -> None:
    _, tables = mitdb_tables
    for window_s, table in tables.items():
        for record in ("201", "219", "100"):
            rows = table.record == record
            assert set(table.split[rows]) == {mitdb_split(record)}
            hop = 5 if mitdb_split(record) == "train" else 10
            ends = table.end[rows]
            assert np.all(ends % (hop * FS_HZ) == 0) and np.all(np.diff(ends) == hop * FS_HZ)
            assert np.all(table.end[rows] - table.start[rows] == window_s * FS_HZ)


def test_short_cinc_records_are_zero_padded(cinc_tables: tuple[SignalStore, dict[int, WindowTable]]) -> None:
    store, tables = cinc_tables
    table = tables[30]
    short = np.flatnonzero(table.record == "A00015")
    assert short.size == 1 and table.start[short[0]] < 0
    window = store.windows(table.row[short], table.start[short], 30 * FS_HZ)[0, 0]
    pad = -int(table.start[short[0]])
    assert pad <= PAD_SAMPLES
    assert np.all(window[:pad] == 0.0) and np.any(window[pad:] != 0.0)
    assert table.label[table.record == "A00004"].tolist() == [1] * int((table.record == "A00004").sum())
    assert set(table.split[table.record == "A00004"]) == {cinc_split("A00004")}
    assert table.rr.shape == (len(table), 23) and np.all(np.isfinite(table.rr))
