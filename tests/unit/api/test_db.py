"""ScoreStore on SQLite and PostgreSQL: idempotent writes, latest per bed, ordering and limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import inspect

from api.db import MAX_SCORES_LIMIT, ScoreStore, make_engine, normalise_url
from api.errors import ConfigError
from api.tables import init_db
from ingest.schemas import ScoreRecord


@pytest.fixture
def store(database_url: str) -> Iterator[ScoreStore]:
    engine = make_engine(database_url)
    init_db(engine)
    yield ScoreStore(engine)
    engine.dispose()


def test_write_many_inserts_and_round_trips_every_field(
    store: ScoreStore, make_score: Callable[..., ScoreRecord]
) -> None:
    record = make_score(extra={"rr_ms": 812.5, "n_beats": 37, "lead": "II", "note": None})
    assert store.write_many([record], received_at_s=10.0) == 1
    (row,) = store.scores_for_bed("bed-1")
    assert row.bed_id == record.bed_id
    assert row.window_end_s == record.window_end_s
    assert row.risk == record.risk
    assert row.models == ["cnn1d", "hrv-gbm"]
    assert row.extra == {"rr_ms": 812.5, "n_beats": 37, "lead": "II", "note": None}
    assert row.complete is True
    assert row.seq_last == 7
    assert row.received_at_s == 10.0


def test_replayed_scores_are_not_duplicated(store: ScoreStore, make_score: Callable[..., ScoreRecord]) -> None:
    records = [make_score(window_end_s=100.0 + i) for i in range(5)]
    assert store.write_many(records, received_at_s=1.0) == 5
    assert store.write_many(records, received_at_s=2.0) == 0
    assert store.write_many([*records[:2], make_score(window_end_s=200.0)], received_at_s=3.0) == 1
    # The same window twice within one batch is stored once.
    assert store.write_many([make_score(window_end_s=300.0)] * 2, received_at_s=4.0) == 1
    assert store.count() == 7


def test_the_first_copy_of_a_replayed_window_wins(
    store: ScoreStore, make_score: Callable[..., ScoreRecord]
) -> None:
    store.write_many([make_score(window_end_s=100.0, risk=0.1)], received_at_s=1.0)
    store.write_many([make_score(window_end_s=100.0, risk=0.9)], received_at_s=2.0)
    (row,) = store.scores_for_bed("bed-1")
    assert row.risk == 0.1
    assert row.received_at_s == 1.0


def test_write_many_of_nothing_writes_nothing(store: ScoreStore) -> None:
    assert store.write_many([], received_at_s=1.0) == 0
    assert store.count() == 0
    assert store.latest_per_bed() == []


def test_latest_per_bed_sorted_by_bed_and_ignores_late_older_windows(
    store: ScoreStore, make_score: Callable[..., ScoreRecord]
) -> None:
    store.write_many(
        [
            make_score("bed-2", 100.0, risk=0.2),
            make_score("bed-2", 130.0, risk=0.8),
            make_score("bed-1", 50.0, state="unscorable", risk=None, reason="noise"),
        ],
        received_at_s=1.0,
    )
    # A late (replayed) older window must not replace the latest one.
    store.write_many([make_score("bed-2", 90.0, risk=0.05)], received_at_s=2.0)
    store.write_many([make_score("bed-1", 60.0, risk=0.3)], received_at_s=3.0)

    latest = store.latest_per_bed()
    assert [(bed.bed_id, score.window_end_s, score.risk) for bed, score in latest] == [
        ("bed-1", 60.0, 0.3),
        ("bed-2", 130.0, 0.8),
    ]
    bed1, bed2 = (bed for bed, _ in latest)
    assert (bed1.first_seen_s, bed1.last_seen_s, bed1.last_state) == (1.0, 3.0, "ok")
    assert (bed2.first_seen_s, bed2.last_seen_s, bed2.last_state) == (1.0, 2.0, "ok")
    assert store.count() == 5


def test_scores_for_bed_newest_first_with_limit_and_since(
    store: ScoreStore, make_score: Callable[..., ScoreRecord]
) -> None:
    store.write_many([make_score("bed-1", 100.0 + i) for i in range(10)], received_at_s=1.0)
    store.write_many([make_score("bed-9", 100.0 + i) for i in range(3)], received_at_s=1.0)

    assert [s.window_end_s for s in store.scores_for_bed("bed-1", limit=3)] == [109.0, 108.0, 107.0]
    assert [s.window_end_s for s in store.scores_for_bed("bed-1", limit=100, since_s=107.0)] == [109.0, 108.0]
    assert len(store.scores_for_bed("bed-1")) == 10
    assert store.scores_for_bed("bed-1", since_s=109.0) == []
    assert store.scores_for_bed("nobody") == []
    assert store.get_bed("bed-9") is not None
    assert store.get_bed("nobody") is None


@pytest.mark.parametrize("limit", [0, -1, MAX_SCORES_LIMIT + 1])
def test_scores_for_bed_refuses_a_limit_out_of_range(store: ScoreStore, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.scores_for_bed("bed-1", limit=limit)


def test_init_db_is_idempotent_and_creates_the_unique_constraint(store: ScoreStore) -> None:
    init_db(store.engine)
    inspector = inspect(store.engine)
    assert {"scores", "beds"} <= set(inspector.get_table_names())
    uniques = inspector.get_unique_constraints("scores")
    assert [sorted(u["column_names"]) for u in uniques] == [["bed_id", "window_end_s"]]


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def test_in_memory_sqlite_is_shared_across_threads(make_score: Callable[..., ScoreRecord]) -> None:
    engine = make_engine("sqlite://")
    try:
        init_db(engine)
        store = ScoreStore(engine)
        store.write_many([make_score()], received_at_s=1.0)
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(store.count).result() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///holmes.db", "sqlite"),
    ],
)
def test_normalise_url_points_postgresql_at_psycopg(given: str, driver: str) -> None:
    assert normalise_url(given).drivername == driver


def test_make_engine_refuses_other_databases() -> None:
    with pytest.raises(ConfigError, match="unsupported database"):
        make_engine("mysql://u@h/db")


def test_batch_writes_round_trip_odd_values_and_keep_the_strip_on_late_windows(
    store: ScoreStore, make_score: Callable[..., ScoreRecord]
) -> None:
    odd = 'caf\u00e9 "q" \\ back\nnew \u2603 \U0001F600'
    extra = {"note": None, "s": odd, "t": True, "big": 2**53 + 1, "tiny": 1e-7, "huge": 1e16, odd: 1}
    first = make_score(window_end_s=1e9 + 0.1, reason=odd, models=("m\u00e9", 'x"y'), scored_at_s=0.1 + 0.2,
                       extra=extra, strip_hz=50.0, strip_mv=(1e-7, -0.0, 1e16, 0.1 + 0.2))
    assert store.write_many([first, make_score("bed-2", 5.0, seq_last=2**31 - 1)], received_at_s=1.0) == 2
    # A late, older window: stored, and the bed is seen again, but its latest window and strip stay.
    late = make_score(window_end_s=1e9 - 4.9, strip_hz=25.0, strip_mv=(9.5,), models=())
    assert store.write_many([late], received_at_s=2.0) == 1

    newest, older = store.scores_for_bed("bed-1")
    assert (newest.window_end_s, newest.reason, newest.models, newest.extra) == (1e9 + 0.1, odd, ["m\u00e9", 'x"y'],
                                                                                   extra)
    assert (newest.scored_at_s, newest.received_at_s, older.window_end_s, older.received_at_s) == (
        0.1 + 0.2, 1.0, 1e9 - 4.9, 2.0)
    assert newest.id < older.id
    bed = store.get_bed("bed-1")
    assert bed is not None
    assert (bed.last_window_end_s, bed.last_seen_s, bed.first_seen_s) == (1e9 + 0.1, 2.0, 1.0)
    assert (bed.strip_hz, bed.strip_mv, bed.last_models) == (50.0, [1e-7, -0.0, 1e16, 0.1 + 0.2], ["m\u00e9", 'x"y'])
    other = store.get_bed("bed-2")
    assert other is not None and other.strip_mv is None and other.strip_hz is None
    assert store.scores_for_bed("bed-2")[0].seq_last == 2**31 - 1
