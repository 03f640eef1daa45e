"""Engine construction and the score store: idempotent batch writes with alert evaluation, reads, retention."""

from __future__ import annotations

import dataclasses
import json
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, Engine, bindparam, create_engine, delete, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from api.alerts import AlertChange, AlertRules, apply_window
from api.errors import ConfigError
from api.schemas import is_partial
from api.tables import Alert, Base, Bed, Score
from ingest.schemas import ScoreRecord

#: The most rows one call of ``scores_for_bed`` or ``page`` returns.
MAX_SCORES_LIMIT = 10_000
#: A jump of more than this many hops between a bed's windows is a restarted stream, not lost windows.
MAX_LOST_GAP_HOPS = 60


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


# The strip is kept only as the bed's latest (``beds.strip_mv``), not per window in the history.
_SCORE_ROW_FIELDS = tuple(f.name for f in dataclasses.fields(ScoreRecord) if f.name not in ("strip_hz", "strip_mv"))
_score_row_values = operator.attrgetter(*_SCORE_ROW_FIELDS)


def _score_row(record: ScoreRecord, received_at_s: float) -> dict[str, Any]:
    # Flat: ``dataclasses.asdict`` deep-copied the strip only for it to be dropped here. ``extra`` is serialised
    # by the insert, so it needs no copy.
    row = dict(zip(_SCORE_ROW_FIELDS, _score_row_values(record), strict=True))
    row["models"] = list(record.models)
    row["received_at_s"] = received_at_s
    return row


_BEDS = Bed.__table__
_BED_COLUMNS = tuple(c.name for c in _BEDS.columns)
#: What a write reads of a bed: all but the strip, which only a newer window replaces (and then entirely).
_BED_STATE_COLUMNS = tuple(name for name in _BED_COLUMNS if name not in ("strip_hz", "strip_mv"))


@dataclass(slots=True)
class _BedRow:
    """A ``beds`` row being advanced by one write: plain attributes, written back with one statement per batch
    (ORM instances cost a unit-of-work flush with one UPDATE per changed column set)."""

    bed_id: str
    first_seen_s: float
    last_seen_s: float
    last_window_end_s: float
    last_state: str
    last_models: list[str] | None
    windows_lost: int
    alert_above: int
    alert_below: int
    open_alert_id: int | None
    strip_hz: float | None = None
    strip_mv: list[float] | None = None
    #: Whether a newer window replaced the strip (read rows leave the stored strip out).
    strip_set: bool = False


# Read rows become ``_BedRow(*row)``: the fields start with the state columns, in table order.
assert tuple(f.name for f in dataclasses.fields(_BedRow))[:len(_BED_STATE_COLUMNS)] == _BED_STATE_COLUMNS
assert set(_BED_COLUMNS) == {f.name for f in dataclasses.fields(_BedRow)} - {"strip_set"}, "_BedRow != beds table"
_bed_values = operator.attrgetter(*_BED_COLUMNS)
_bed_state_values = operator.attrgetter(*_BED_STATE_COLUMNS)
_SELECT_BEDS = select(*(_BEDS.c[name] for name in _BED_STATE_COLUMNS))
_INSERT_BEDS = _BEDS.insert()


def _update_beds(columns: Sequence[str]) -> Any:
    return (_BEDS.update().where(_BEDS.c.bed_id == bindparam("key_bed_id"))
            .values({name: bindparam(name) for name in columns if name != "bed_id"}))


_UPDATE_BEDS = _update_beds(_BED_COLUMNS)
_UPDATE_BED_STATES = _update_beds(_BED_STATE_COLUMNS)


def _pg_from_json(table: Any, columns: Sequence[str]) -> list[str]:
    """The values, as SQL, of ``columns`` read from ``x``: the rows of a PostgreSQL statement that come in one JSON
    array parameter (``:rows``, objects keyed by column name) through ``json_populate_recordset``.

    One parameter per batch instead of one per value: executemany paid psycopg's dumping of every value (and the
    parsing of a statement with thousands of placeholders) for each row. JSON numbers carry floats exactly (``repr``
    round-trips), and a JSON column keeps the text of its value, which is what ``json.dumps`` of that value alone
    writes; a JSON column's ``null`` stays a JSON ``null``, as SQLAlchemy writes ``None`` (``none_as_null`` off).
    """
    return [f"COALESCE(x.{name}, 'null'::json)" if isinstance(table.c[name].type, JSON) else f"x.{name}"
            for name in columns]


# Built from the table definitions, not from data: every value travels in the :rows parameter.
_SCORE_INSERT_COLUMNS = (*_SCORE_ROW_FIELDS, "received_at_s")
assert set(_SCORE_INSERT_COLUMNS) == {c.name for c in Score.__table__.columns} - {"id"}
#: The batch's scores in one statement; ``ORDER BY ordinality`` gives them ids in batch order, as executemany did.
_PG_INSERT_SCORES = text(
    f"INSERT INTO scores ({', '.join(_SCORE_INSERT_COLUMNS)}) "  # noqa: S608 - column names from the table
    f"SELECT {', '.join(_pg_from_json(Score.__table__, _SCORE_INSERT_COLUMNS))} "
    "FROM json_populate_recordset(NULL::scores, CAST(:rows AS json)) WITH ORDINALITY AS x ORDER BY x.ordinality "
    "ON CONFLICT (bed_id, window_end_s) DO NOTHING RETURNING bed_id, window_end_s"
)


def _pg_update_beds(columns: Sequence[str]) -> Any:
    columns = [name for name in columns if name != "bed_id"]
    sets = ", ".join(f"{name} = {value}" for name, value in zip(columns, _pg_from_json(_BEDS, columns), strict=True))
    return text(f"UPDATE beds SET {sets} "  # noqa: S608 - column names from the table
                "FROM json_populate_recordset(NULL::beds, CAST(:rows AS json)) AS x WHERE beds.bed_id = x.bed_id")


_PG_UPDATE_BEDS = _pg_update_beds(_BED_COLUMNS)
_PG_UPDATE_BED_STATES = _pg_update_beds(_BED_STATE_COLUMNS)


@dataclass(slots=True)
class WriteOutcome:
    """What one ``ScoreStore.write`` did: the scores stored for the first time and what followed from them."""

    inserted: list[ScoreRecord] = field(default_factory=list)
    alerts: list[AlertChange] = field(default_factory=list)
    windows_lost: int = 0
    #: Times a bed's members changed between two full (not partial) scores: the beds moving to a new selection.
    provenance_changes: int = 0


class ScoreStore:
    """Reads and writes scores and beds; every method is blocking (call it from a thread in async code)."""

    def __init__(self, engine: Engine, rules: AlertRules | None = None, hop_s: float = 5.0) -> None:
        self.engine = engine
        self.rules = rules or AlertRules()
        self.hop_s = hop_s

    def write_many(self, records: Sequence[ScoreRecord], received_at_s: float) -> int:
        """``write`` returning only the number of rows inserted."""
        return len(self.write(records, received_at_s).inserted)

    def write(self, records: Sequence[ScoreRecord], received_at_s: float, now_s: float | None = None) -> WriteOutcome:
        """Insert the scores not stored yet, advance their beds and alerts, in one transaction.

        Only newly inserted windows move a bed on (replays change nothing), and only windows newer than the
        bed's latest move its latest score, strip, provenance and alert streaks.
        """
        outcome = WriteOutcome()
        if not records:
            return outcome
        now = time.time() if now_s is None else now_s
        unique: dict[tuple[str, float], ScoreRecord] = {}
        for record in records:
            unique.setdefault((record.bed_id, record.window_end_s), record)
        pg = self.engine.dialect.name == "postgresql"
        rows = [_score_row(r, received_at_s) for r in unique.values()]
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            conn = session.connection()
            if pg:
                keys = conn.execute(_PG_INSERT_SCORES, {"rows": json.dumps(rows)}).all()
            else:
                insert = _insert(self.engine, Score).on_conflict_do_nothing(index_elements=["bed_id", "window_end_s"])
                keys = conn.execute(insert.returning(Score.bed_id, Score.window_end_s), rows).all()
            outcome.inserted = sorted((unique[(k.bed_id, k.window_end_s)] for k in keys),
                                      key=lambda r: (r.bed_id, r.window_end_s))
            if not outcome.inserted:
                return outcome
            bed_ids = sorted({r.bed_id for r in outcome.inserted})
            # Locked in bed-id order, so that concurrent writers cannot deadlock on them.
            stored = {
                row.bed_id: tuple(row)
                for row in conn.execute(
                    _SELECT_BEDS.where(_BEDS.c.bed_id.in_(bed_ids)).order_by(_BEDS.c.bed_id).with_for_update()
                )
            }
            beds = {bed_id: _BedRow(*row) for bed_id, row in stored.items()}
            # The open alerts in one query: ``apply_window`` then finds them in the session's identity map
            # instead of loading (and autoflushing) once per window. Held here: the identity map is weak.
            open_ids = sorted({b.open_alert_id for b in beds.values() if b.open_alert_id is not None})
            open_alerts = list(session.scalars(select(Alert).where(Alert.id.in_(open_ids)))) if open_ids else []
            for record in outcome.inserted:
                bed = beds.get(record.bed_id)
                if bed is None:
                    bed = beds[record.bed_id] = _BedRow(
                        bed_id=record.bed_id, first_seen_s=received_at_s, last_seen_s=received_at_s,
                        last_window_end_s=record.window_end_s, last_state=record.state, last_models=None,
                        windows_lost=0, alert_above=0, alert_below=0, open_alert_id=None,
                    )
                else:
                    bed.last_seen_s = max(bed.last_seen_s, received_at_s)
                    if record.window_end_s <= bed.last_window_end_s:
                        continue  # a late, older window: stored in the history, but not the bed's latest
                    hops = round((record.window_end_s - bed.last_window_end_s) / self.hop_s)
                    if 1 < hops <= MAX_LOST_GAP_HOPS:
                        bed.windows_lost += hops - 1
                        outcome.windows_lost += hops - 1
                bed.last_window_end_s, bed.last_state = record.window_end_s, record.state
                bed.strip_hz = record.strip_hz if record.strip_mv else None
                bed.strip_mv = list(record.strip_mv) if record.strip_mv else None
                bed.strip_set = True
                # A partial score lacks the members skipped for the deadline: that is no change of selection.
                if record.state == "ok" and record.models and not is_partial(record.extra):
                    if bed.last_models and list(record.models) != bed.last_models:
                        outcome.provenance_changes += 1
                    bed.last_models = list(record.models)
                change = apply_window(session, self.rules, bed, record, now)
                if change is not None:
                    outcome.alerts.append(change)
            # One statement per kind of change, each row keyed by its bed; unchanged beds are not written (as
            # the ORM's flush did not). A bed with a newer window always changed (its last_window_end_s).
            new: list[dict[str, Any]] = []
            newer: list[dict[str, Any]] = []
            touched: list[dict[str, Any]] = []
            for bed_id, bed in beds.items():
                if bed_id not in stored:
                    new.append(dict(zip(_BED_COLUMNS, _bed_values(bed), strict=True)))
                elif bed.strip_set:
                    newer.append(dict(zip(_BED_COLUMNS, _bed_values(bed), strict=True)))
                elif (values := _bed_state_values(bed)) != stored[bed_id]:
                    touched.append(dict(zip(_BED_STATE_COLUMNS, values, strict=True)))
            if new:
                conn.execute(_INSERT_BEDS, new)
            for pg_update, update, changes in ((_PG_UPDATE_BEDS, _UPDATE_BEDS, newer),
                                               (_PG_UPDATE_BED_STATES, _UPDATE_BED_STATES, touched)):
                if changes and pg:
                    conn.execute(pg_update, {"rows": json.dumps(changes)})
                elif changes:
                    conn.execute(update, [{**row, "key_bed_id": row["bed_id"]} for row in changes])
            open_alerts.clear()
        return outcome

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

    def latest_of(self, bed_id: str) -> tuple[Bed, Score] | None:
        """One bed with its latest score, or ``None``."""
        query = (
            select(Bed, Score)
            .join(Score, (Score.bed_id == Bed.bed_id) & (Score.window_end_s == Bed.last_window_end_s))
            .where(Bed.bed_id == bed_id)
        )
        with Session(self.engine) as session:
            row = session.execute(query).first()
            return (row[0], row[1]) if row is not None else None

    def scores_for_bed(self, bed_id: str, limit: int = 100, since_s: float | None = None,
                       until_s: float | None = None) -> list[Score]:
        """The newest ``limit`` scores of a bed, newest first, with ``since_s < window_end_s <= until_s``."""
        return self.page(bed_id, limit=limit, since_s=since_s, until_s=until_s)

    def page(self, bed_id: str | None = None, limit: int = 100, since_s: float | None = None,
             until_s: float | None = None, after: tuple[float, int] | None = None) -> list[Score]:
        """Scores newest first; ``after`` = (window_end_s, id) of the last row of the previous page."""
        if not 1 <= limit <= MAX_SCORES_LIMIT:
            raise ValueError(f"limit must be in [1, {MAX_SCORES_LIMIT}], not {limit}")
        query = select(Score)
        if bed_id is not None:
            query = query.where(Score.bed_id == bed_id)
        if since_s is not None:
            query = query.where(Score.window_end_s > since_s)
        if until_s is not None:
            query = query.where(Score.window_end_s <= until_s)
        if after is not None:
            end_s, row_id = after
            query = query.where((Score.window_end_s < end_s) | ((Score.window_end_s == end_s) & (Score.id < row_id)))
        query = query.order_by(Score.window_end_s.desc(), Score.id.desc()).limit(limit)
        with Session(self.engine) as session:
            return list(session.scalars(query))

    def trends(self, window_s: float, bed_id: str | None = None) -> dict[str, list[tuple[float, float | None, str]]]:
        """Each bed's ``(window_end_s, risk, state)`` over the ``window_s`` before its latest window, oldest first.

        Relative to each bed's own latest window, so a monitor whose clock is off still gets its last hour.
        """
        query = (
            select(Score.bed_id, Score.window_end_s, Score.risk, Score.state)
            .join(Bed, Bed.bed_id == Score.bed_id)
            .where(Score.window_end_s > Bed.last_window_end_s - window_s)
            .order_by(Score.bed_id, Score.window_end_s)
        )
        if bed_id is not None:
            query = query.where(Score.bed_id == bed_id)
        out: dict[str, list[tuple[float, float | None, str]]] = {}
        with Session(self.engine) as session:
            for row in session.execute(query):
                out.setdefault(row.bed_id, []).append((row.window_end_s, row.risk, row.state))
        return out

    def purge(self, before_s: float) -> int:
        """Delete scores of windows ending before ``before_s`` (retention); returns how many."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(delete(Score).where(Score.window_end_s < before_s))
            return int(getattr(result, "rowcount", 0) or 0)

    def count(self) -> int:
        """Number of stored scores."""
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count()).select_from(Score)) or 0)

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
