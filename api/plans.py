"""The ensemble plans the workers put in force: stored from ``<prefix>.plans``, the latest per worker in memory.

Each worker publishes a ``PlanRecord`` whenever it puts a selection in force (reason ``start`` first, then one per
re-plan). ``PlanMonitor`` reads the topic from its earliest offset without a consumer group, as the dead-letter
monitor does, and stores every plan once (``ensemble_plans`` is unique on ``(worker_id, plan_id)``), so the
history survives the topic's retention and a restarted api only re-reads duplicates. A record that cannot be
decoded or stored is counted and logged with its position, never fatal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from api.consumer import Message, TopicTail, _Backoff
from api.db import _insert
from api.metrics import Metrics
from api.schemas import (
    BudgetPublic,
    ConsumerState,
    LatencyComparisonPublic,
    PlanMonitorPublic,
    PlanPublic,
    ReplansPublic,
    SelectionPublic,
    Unavailable,
    WorkerLatencyPublic,
    WorkerSelectionPublic,
)
from api.tables import REASON_KIND_LENGTH, EnsemblePlan
from ingest.codec import decode_plan
from ingest.errors import DecodeError
from ingest.schemas import PlanRecord

log = logging.getLogger(__name__)

#: The most rows one call of ``PlanStore.page`` returns.
MAX_PLANS_LIMIT = 1000
#: Workers whose plan in force is kept in memory (the most recently planned); older ones stay in the table.
MAX_WORKERS = 64
#: Distinct reason kinds labelled in Prometheus; further ones are counted as ``other``.
MAX_REASON_KINDS = 32
#: Integers the database keeps (BIGINT), with room to spare.
MAX_INT = 2**62
START = "start"
_KIND = re.compile(r"[a-z0-9][a-z0-9_-]*")


def reason_kind(reason: str) -> str:
    """The first word of a plan's reason, lower case: ``"load: beds 64 -> 128"`` -> ``"load"`` (else ``other``)."""
    words = reason.split(maxsplit=1)
    match = _KIND.match(words[0].lower()) if words else None
    return match.group(0)[:REASON_KIND_LENGTH] if match else "other"


def _storable(text: str) -> bool:
    # PostgreSQL refuses NUL in text and no driver encodes lone surrogates (json.loads lets both through).
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_plan(plan: PlanRecord) -> str | None:
    """Why the api cannot store a decoded plan, or ``None`` when it can."""
    if plan.plan_id > MAX_INT or plan.beds > MAX_INT:
        return f"plan_id and beds must be at most {MAX_INT}"
    if not all(_storable(s) for s in (plan.worker_id, plan.reason, *plan.members, *plan.previous)):
        return "text with NUL or unencodable characters"
    return None


def _row(plan: PlanRecord, received_at_s: float) -> dict[str, Any]:
    row = dataclasses.asdict(plan)
    row.update(members=list(plan.members), previous=list(plan.previous), reason_kind=reason_kind(plan.reason),
               received_at_s=received_at_s)
    return row


@dataclass(slots=True)
class PlanWrite:
    """What one ``PlanStore.add_many`` did: the plans stored for the first time, newest last."""

    inserted: list[PlanPublic] = field(default_factory=list)
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0


def _transient(exc: SQLAlchemyError) -> bool:
    """A database that is away or busy (retry the batch), as opposed to a row it refuses (skip the row)."""
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


class PlanStore:
    """Reads and writes ``ensemble_plans``; every method is blocking (call it from a thread in async code)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add_many(self, plans: Sequence[PlanRecord], received_at_s: float) -> PlanWrite:
        """Store the plans not stored yet, in order; a row the database refuses is skipped and counted.

        Raises ``SQLAlchemyError`` only when the database is unreachable or busy (the caller retries).
        """
        try:
            return self._add(plans, received_at_s)
        except Exception as exc:  # noqa: BLE001 - one refused row must not stop the plan history
            if isinstance(exc, SQLAlchemyError) and _transient(exc):
                raise
            if len(plans) == 1:
                log.warning("plan %d of worker %r refused by the database: %s: %s", plans[0].plan_id,
                            plans[0].worker_id, type(exc).__name__, str(exc)[:300])
                return PlanWrite(rejected=1)
        # One row was refused: store the plans one by one, so that only that one is skipped.
        outcome = PlanWrite()
        for plan in plans:
            one = self.add_many([plan], received_at_s)
            outcome.inserted += one.inserted
            outcome.duplicates += one.duplicates
            outcome.conflicts += one.conflicts
            outcome.rejected += one.rejected
        return outcome

    def _add(self, plans: Sequence[PlanRecord], received_at_s: float) -> PlanWrite:
        outcome = PlanWrite()
        unique: dict[tuple[str, int], PlanRecord] = {}
        for plan in plans:
            key = (plan.worker_id, plan.plan_id)
            if key in unique:
                outcome.duplicates += 1
                outcome.conflicts += _differs(unique[key], plan)
            else:
                unique[key] = plan
        if not unique:
            return outcome
        rows = {key: _row(plan, received_at_s) for key, plan in unique.items()}
        insert = _insert(self.engine, EnsemblePlan).on_conflict_do_nothing(index_elements=["worker_id", "plan_id"])
        with Session(self.engine) as session, session.begin():
            returned = session.connection().execute(
                insert.returning(EnsemblePlan.id, EnsemblePlan.worker_id, EnsemblePlan.plan_id), list(rows.values())
            ).all()
            ids = {(r.worker_id, r.plan_id): r.id for r in returned}
            others = [key for key in unique if key not in ids]
            if others:
                stored = session.execute(
                    select(EnsemblePlan.worker_id, EnsemblePlan.plan_id, EnsemblePlan.at_s, EnsemblePlan.members)
                    .where(or_(*(and_(EnsemblePlan.worker_id == w, EnsemblePlan.plan_id == p) for w, p in others)))
                ).all()
                for row in stored:
                    plan = unique[(row.worker_id, row.plan_id)]
                    outcome.duplicates += 1
                    outcome.conflicts += row.at_s != plan.at_s or list(row.members) != list(plan.members)
        outcome.inserted = sorted((PlanPublic.model_validate({**rows[key], "id": i}) for key, i in ids.items()),
                                  key=lambda p: p.id)
        return outcome

    def page(self, limit: int = 100, before: int | None = None, worker_id: str | None = None) -> list[EnsemblePlan]:
        """Plans newest first (by ``id``); ``before`` is the ``id`` of the last row of the previous page."""
        if not 1 <= limit <= MAX_PLANS_LIMIT:
            raise ValueError(f"limit must be in [1, {MAX_PLANS_LIMIT}], not {limit}")
        query = select(EnsemblePlan)
        if before is not None:
            query = query.where(EnsemblePlan.id < before)
        if worker_id is not None:
            query = query.where(EnsemblePlan.worker_id == worker_id)
        with Session(self.engine) as session:
            return list(session.scalars(query.order_by(EnsemblePlan.id.desc()).limit(limit)))

    def latest_per_worker(self, limit: int = MAX_WORKERS) -> list[EnsemblePlan]:
        """Each worker's plan with the highest ``plan_id`` (its plan in force), most recently stored first."""
        newest = (select(EnsemblePlan.worker_id, func.max(EnsemblePlan.plan_id).label("plan_id"))
                  .group_by(EnsemblePlan.worker_id).subquery())
        query = (select(EnsemblePlan)
                 .join(newest, (EnsemblePlan.worker_id == newest.c.worker_id)
                       & (EnsemblePlan.plan_id == newest.c.plan_id))
                 .order_by(EnsemblePlan.id.desc()).limit(limit))
        with Session(self.engine) as session:
            return list(session.scalars(query))

    def counts(self) -> tuple[int, int]:
        """Plans stored, and those among them that are re-plans (reason kind other than ``start``)."""
        with Session(self.engine) as session:
            total = int(session.scalar(select(func.count()).select_from(EnsemblePlan)) or 0)
            starts = int(session.scalar(select(func.count()).select_from(EnsemblePlan)
                                        .where(EnsemblePlan.reason_kind == START)) or 0)
        return total, total - starts


def _differs(a: PlanRecord, b: PlanRecord) -> bool:
    return a.at_s != b.at_s or tuple(a.members) != tuple(b.members)


@dataclass(slots=True)
class PlanStats:
    """Counters since start (see ``PlanMonitorPublic``)."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    undecodable: int = 0
    rejected: int = 0
    last_error: str | None = None


class PlanMonitor(TopicTail):
    """Stores every plan of ``<prefix>.plans`` and keeps each worker's plan in force and the recent ones."""

    def __init__(self, bootstrap: str | None, topic: str | None, store: PlanStore, metrics: Metrics,
                 keep: int = 20, fetch_max_wait_ms: int = 100, backoff_max_s: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.store = store
        self.metrics = metrics
        self.keep = keep
        self.stats = PlanStats()
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.backoff_max_s = backoff_max_s
        self._clock = clock
        #: worker id -> its plan in force (highest plan_id)
        self.latest: dict[str, PlanPublic] = {}
        self.recent: deque[PlanPublic] = deque(maxlen=keep)
        self.total = 0
        self.changes = 0
        self._kinds: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._next_offset: dict[int, int] = {}
        metrics.plan_gauges.source = lambda: list(self.latest.values())

    @property
    def state(self) -> ConsumerState:
        if self.bootstrap is None or self.topic is None:
            return "disabled"
        if self._task is None or self._task.done():
            return "stopped"
        return "running" if self._running else "starting"

    def load(self) -> None:
        """Take the plans in force, the recent ones and the counts from the table (blocking; at start-up)."""
        self.total, self.changes = self.store.counts()
        self.latest = {row.worker_id: PlanPublic.model_validate(row)
                       for row in reversed(self.store.latest_per_worker(MAX_WORKERS))}
        self.recent.clear()
        self.recent.extend(PlanPublic.model_validate(row) for row in reversed(self.store.page(self.keep)))

    def decode(self, messages: Sequence[Message]) -> list[PlanRecord]:
        """Decode and check raw records; bad ones are counted and logged with their position, then skipped."""
        plans = []
        for message in messages:
            self.stats.received += 1
            try:
                plan = decode_plan(message.value)
            except Exception as exc:  # noqa: BLE001 - one bad record must never stop the reader
                self.stats.undecodable += 1
                log.warning("undecodable plan at %s[%d]@%d: %s", message.topic, message.partition, message.offset,
                            exc if isinstance(exc, DecodeError) else f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            why = check_plan(plan)
            if why is not None:
                self.stats.rejected += 1
                log.warning("rejected plan at %s[%d]@%d: %s", message.topic, message.partition, message.offset, why)
                continue
            plans.append(plan)
        return plans

    async def handle(self, messages: Sequence[Message]) -> int:
        """Decode, store and apply raw records in one attempt; returns the plans stored.

        Raises ``SQLAlchemyError`` when the database is away (nothing of the batch is applied then).
        """
        plans = self.decode(messages)
        if not plans:
            return 0
        outcome = await asyncio.to_thread(self.store.add_many, plans, self._clock())
        self.apply(outcome)
        return len(outcome.inserted)

    async def _store_until_done(self, plans: Sequence[PlanRecord]) -> None:
        backoff = _Backoff(self.backoff_max_s)
        while True:
            try:
                outcome = await asyncio.to_thread(self.store.add_many, plans, self._clock())
            except SQLAlchemyError as exc:
                # The database is away: retried until stored, and later records wait (they are few).
                self.stats.last_error = f"database: {type(exc).__name__}: {str(exc)[:200]}"
                log.warning("storing %d plans failed (%s); retrying in %.2f s", len(plans), self.stats.last_error,
                            backoff.delay_s)
                await backoff.sleep()
                continue
            if self.stats.last_error and self.stats.last_error.startswith("database:"):
                self.stats.last_error = None
            self.apply(outcome)
            return

    def apply(self, outcome: PlanWrite) -> None:
        """Count a write and advance the plans in force with the newly stored plans."""
        self.stats.stored += len(outcome.inserted)
        self.stats.duplicates += outcome.duplicates
        self.stats.rejected += outcome.rejected
        if outcome.conflicts:
            self.stats.conflicts += outcome.conflicts
            log.warning("%d plans reuse a stored (worker_id, plan_id) with other content; kept the first",
                        outcome.conflicts)
        for plan in outcome.inserted:
            self.total += 1
            self.changes += plan.reason_kind != START
            self.recent.append(plan)
            current = self.latest.get(plan.worker_id)
            if current is None or plan.plan_id > current.plan_id:
                self.latest[plan.worker_id] = plan
            kind = plan.reason_kind
            if kind not in self._kinds and len(self._kinds) >= MAX_REASON_KINDS:
                kind = "other"
            self._kinds.add(kind)
            self.metrics.selection_changes.labels(kind).inc()
            log.info("worker %s put plan %d in force (%s): %s", plan.worker_id, plan.plan_id, plan.reason,
                     ", ".join(plan.members))
        while len(self.latest) > MAX_WORKERS:
            oldest = min(self.latest.values(), key=lambda p: p.id)
            del self.latest[oldest.worker_id]

    # -- what the ensemble page shows ------------------------------------------------------------------

    def snapshot(self) -> PlanMonitorPublic:
        s = self.stats
        return PlanMonitorPublic(state=self.state, topic=self.topic, received=s.received, stored=s.stored,
                                 duplicates=s.duplicates, conflicts=s.conflicts, undecodable=s.undecodable,
                                 rejected=s.rejected, last_error=s.last_error)

    def in_force(self) -> list[PlanPublic]:
        """Each worker's plan in force, most recently stored first."""
        return sorted(self.latest.values(), key=lambda p: -p.id)

    def unavailable(self) -> Unavailable:
        """Why there is no plan to show."""
        if self.state == "disabled":
            return Unavailable(reason="no ensemble plan stored, and the api does not read the plans topic "
                                      "(no Kafka bootstrap or no plans_topic configured)")
        reason = (f"no ensemble plan received yet on {self.topic}: each worker publishes one when it puts a "
                  "selection in force (at start-up and at every re-plan); is a worker running?")
        if self.stats.last_error:
            reason += f" (plan reader: {self.stats.last_error})"
        return Unavailable(reason=reason)

    def selection(self) -> SelectionPublic | Unavailable:
        plans = self.in_force()
        if not plans:
            return self.unavailable()
        return SelectionPublic(workers=[
            WorkerSelectionPublic(worker_id=p.worker_id, plan_id=p.plan_id, members=p.members, objective=p.objective,
                                  since_s=p.at_s, reason=p.reason, beds=p.beds, windows_per_s=p.windows_per_s)
            for p in plans])

    def budget(self) -> BudgetPublic | Unavailable:
        plans = self.in_force()
        if not plans:
            return self.unavailable()
        return BudgetPublic(budget_ms=min(p.budget_ms for p in plans),
                            by_worker={p.worker_id: p.budget_ms for p in plans})

    def latency(self) -> LatencyComparisonPublic | Unavailable:
        plans = self.in_force()
        if not plans:
            return self.unavailable()
        measured = self.metrics.latency()
        worker = self.metrics.worker_latency()
        budget_ms = min(p.budget_ms for p in plans)
        return LatencyComparisonPublic(
            budget_ms=budget_ms,
            predicted_p50_ms=max(p.predicted_p50_ms for p in plans),
            predicted_p99_ms=max(p.predicted_p99_ms for p in plans),
            measured_p50_ms=measured.p50_ms,
            measured_p99_ms=measured.p99_ms,
            worker_measured_p99_ms=worker.p99_ms,
            worker_measured_windows=worker.n,
            within_budget=None if measured.p99_ms is None else measured.p99_ms <= budget_ms,
            workers=[WorkerLatencyPublic(worker_id=p.worker_id, plan_id=p.plan_id, budget_ms=p.budget_ms,
                                         predicted_p50_ms=p.predicted_p50_ms, predicted_p99_ms=p.predicted_p99_ms,
                                         measured_p99_ms=p.measured_p99_ms, slowdown=p.slowdown) for p in plans],
        )

    def replans(self) -> ReplansPublic | Unavailable:
        if not self.recent:
            return self.unavailable()
        return ReplansPublic(total=self.total, changes=self.changes, items=list(reversed(self.recent)))

    # -- the Kafka loop -----------------------------------------------------------------------------------

    async def on_records(self, messages: list[Message]) -> None:
        plans = self.decode(messages)
        if plans:
            await self._store_until_done(plans)

    def set_error(self, error: str | None) -> None:
        self.stats.last_error = error
