"""Engine construction and the score store (idempotent batch writes, per-bed reads)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, case, create_engine, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from api.errors import ConfigError
from api.tables import Base, Bed, Score
from ingest.schemas import ScoreRecord

#: The most rows one call of ``scores_for_bed`` returns.
MAX_SCORES_LIMIT = 10_000


def normalise_url(url: str | URL) -> URL:
    """Point plain ``postgresql://`` (and ``postgres://``) URLs at the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL) -> Engine:
    """An engine for SQLite (WAL, usable across threads) or PostgreSQL (psycopg 3); connects lazily."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        in_memory = parsed.database in (None, "", ":memory:")
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": 10.0},
            # Each connection to ":memory:" is a separate database, so all threads must share one.
            poolclass=StaticPool if in_memory else None,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    raise ConfigError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite:// or postgresql://")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the page's reads run while the consumer writes; NORMAL skips an fsync per commit, and a
    # commit lost to power failure is re-read from Kafka because offsets are committed only after the write.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _insert(engine: Engine, table: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """The dialect-specific ``insert`` that knows ``ON CONFLICT``."""
    name = engine.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no idempotent insert for the {name} dialect")


def _score_row(record: ScoreRecord, received_at_s: float) -> dict[str, Any]:
    row = dataclasses.asdict(record)
    row["models"] = list(record.models)
    row["received_at_s"] = received_at_s
    return row


class ScoreStore:
    """Reads and writes scores and beds; every method is blocking (call it from a thread in async code)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write_many(self, records: Sequence[ScoreRecord], received_at_s: float) -> int:
        """Insert the scores not stored yet and update their beds, in one transaction; returns rows inserted."""
        if not records:
            return 0
        unique: dict[tuple[str, float], ScoreRecord] = {}
        latest: dict[str, ScoreRecord] = {}
        for record in records:
            unique.setdefault((record.bed_id, record.window_end_s), record)
            best = latest.get(record.bed_id)
            if best is None or record.window_end_s >= best.window_end_s:
                latest[record.bed_id] = record
        scores = _insert(self.engine, Score).on_conflict_do_nothing(index_elements=["bed_id", "window_end_s"])
        beds = _insert(self.engine, Bed)
        newer = beds.excluded.last_window_end_s >= Bed.last_window_end_s
        beds = beds.on_conflict_do_update(
            index_elements=["bed_id"],
            set_={
                "last_seen_s": beds.excluded.last_seen_s,
                "last_window_end_s": case((newer, beds.excluded.last_window_end_s), else_=Bed.last_window_end_s),
                "last_state": case((newer, beds.excluded.last_state), else_=Bed.last_state),
            },
        )
        bed_rows = [
            {
                "bed_id": bed_id,
                "first_seen_s": received_at_s,
                "last_seen_s": received_at_s,
                "last_window_end_s": record.window_end_s,
                "last_state": record.state,
            }
            # Sorted so that concurrent writers lock bed rows in the same order and cannot deadlock.
            for bed_id, record in sorted(latest.items())
        ]
        with self.engine.begin() as conn:
            inserted = conn.execute(
                scores.returning(Score.id), [_score_row(r, received_at_s) for r in unique.values()]
            ).all()
            conn.execute(beds, bed_rows)
        return len(inserted)

    def latest_per_bed(self) -> list[tuple[Bed, Score]]:
        """Each bed with its latest score (highest ``window_end_s``), sorted by bed id."""
        query = (
            select(Bed, Score)
            .join(Score, (Score.bed_id == Bed.bed_id) & (Score.window_end_s == Bed.last_window_end_s))
            .order_by(Bed.bed_id)
        )
        with Session(self.engine) as session:
            return [(bed, score) for bed, score in session.execute(query)]

    def get_bed(self, bed_id: str) -> Bed | None:
        """One bed, or ``None`` when it has never sent a score."""
        with Session(self.engine) as session:
            return session.get(Bed, bed_id)

    def scores_for_bed(self, bed_id: str, limit: int = 100, since_s: float | None = None) -> list[Score]:
        """The newest ``limit`` scores of a bed, newest first, with ``window_end_s > since_s`` if given."""
        if not 1 <= limit <= MAX_SCORES_LIMIT:
            raise ValueError(f"limit must be in [1, {MAX_SCORES_LIMIT}], not {limit}")
        query = select(Score).where(Score.bed_id == bed_id)
        if since_s is not None:
            query = query.where(Score.window_end_s > since_s)
        query = query.order_by(Score.window_end_s.desc()).limit(limit)
        with Session(self.engine) as session:
            return list(session.scalars(query))

    def count(self) -> int:
        """Number of stored scores."""
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count()).select_from(Score)) or 0)

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
