"""The registry store: model versions, their lifecycle and its history, in the database.

Lifecycle (``TRANSITIONS``)::

    registered -> validated -> shadow -> active -> retired
         \\____________\\__________\\_________________/^   (retire from any state but retired)

``registered -> validated`` is taken by the registration gates (a row is written only once they all
pass, so stored rows start at ``validated``); ``promote`` moves one step forward along
``validated -> shadow -> active``. At most one version per name is ``active``: promoting a version to
``active`` retires the previously active one in the same transaction (recorded as "superseded by
name@version"), so the step never leaves a name without an active model and never leaves two. Retired
is final; to roll back, promote another shadow version (or register the old artifact as a new version).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.registry.errors import AlreadyRegistered, ModelNotFound, RegistryError, TransitionRefused
from models.registry.tables import STATUSES, ArtifactFormat, ModelStatus, ModelTransition, ModelVersion

__all__ = [
    "PROMOTION",
    "TRANSITIONS",
    "ModelRecord",
    "NewModelVersion",
    "RegistryStore",
    "TransitionRecord",
    "parse_ref",
]

TRANSITIONS: Mapping[ModelStatus, frozenset[ModelStatus]] = {
    "registered": frozenset({"validated", "retired"}),
    "validated": frozenset({"shadow", "retired"}),
    "shadow": frozenset({"active", "retired"}),
    "active": frozenset({"retired"}),
    "retired": frozenset(),
}
"""Allowed status changes: current status -> statuses it may move to."""

PROMOTION: Mapping[ModelStatus, ModelStatus] = {"validated": "shadow", "shadow": "active"}
"""The one step ``promote`` takes from each status it accepts."""

_STEP_REASON = {"registered": "registration started", "validated": "registration gates passed"}
_STAMP = {"validated": "validated_at", "shadow": "shadow_at", "active": "active_at", "retired": "retired_at"}


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without a zone; every stored one is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split ``name@version`` (or a bare ``name``) into its parts."""
    name, sep, version = ref.partition("@")
    if not name or (sep and not version):
        raise RegistryError(f"expected NAME or NAME@VERSION, got {ref!r}")
    if not sep:
        return name, None
    try:
        number = int(version)
    except ValueError:
        raise RegistryError(f"version must be an integer in {ref!r}") from None
    return name, number


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One entry of a model version's history."""

    from_status: ModelStatus | None
    to_status: ModelStatus
    at: datetime
    actor: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class NewModelVersion:
    """What the registration writes for a version whose gates passed."""

    name: str
    version: int
    family: str
    artifact_format: ArtifactFormat
    leads: int
    sample_rate_hz: float
    window_s: float
    input_kind: str
    artifact_sha256: str
    artifact_path: str
    card: dict[str, Any]
    metrics: dict[str, Any]
    latency_ms: dict[int, float]
    gates: list[dict[str, Any]]
    owner: str | None


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A stored model version, detached from the database session.

    ``artifact_path`` is relative to the registry's artifact folder (``HOLMES_STATE_DIR/models``);
    ``latency_ms`` maps batch size to milliseconds per call; ``history`` is filled by ``get``.
    """

    id: int
    name: str
    version: int
    family: str
    artifact_format: ArtifactFormat
    leads: int
    sample_rate_hz: float
    window_s: float
    input_kind: str
    artifact_sha256: str
    artifact_path: str
    card: dict[str, Any]
    metrics: dict[str, Any]
    latency_ms: dict[int, float]
    gates: list[dict[str, Any]]
    owner: str | None
    status: ModelStatus
    registered_at: datetime
    validated_at: datetime | None
    shadow_at: datetime | None
    active_at: datetime | None
    retired_at: datetime | None
    updated_at: datetime
    history: tuple[TransitionRecord, ...] = field(default=())

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @classmethod
    def of(cls, row: ModelVersion, history: tuple[TransitionRecord, ...] = ()) -> ModelRecord:
        """Snapshot of a row."""
        return cls(
            id=row.id,
            name=row.name,
            version=row.version,
            family=row.family,
            artifact_format=cast(ArtifactFormat, row.artifact_format),
            leads=row.leads,
            sample_rate_hz=row.sample_rate_hz,
            window_s=row.window_s,
            input_kind=row.input_kind,
            artifact_sha256=row.artifact_sha256,
            artifact_path=row.artifact_path,
            card=dict(row.card),
            metrics=dict(row.metrics),
            latency_ms={int(k): float(v) for k, v in row.latency_ms.items()},
            gates=list(row.gates),
            owner=row.owner,
            status=cast(ModelStatus, row.status),
            registered_at=cast(datetime, _utc(row.registered_at)),
            validated_at=_utc(row.validated_at),
            shadow_at=_utc(row.shadow_at),
            active_at=_utc(row.active_at),
            retired_at=_utc(row.retired_at),
            updated_at=cast(datetime, _utc(row.updated_at)),
            history=history,
        )


class RegistryStore:
    """Reads and writes the registry tables; every method is blocking and runs its own transaction.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        A database whose registry tables are migrated (``upgrade_registry``).
    clock : callable, optional
        Returns the current UTC time; injectable for tests.
    """

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = _now) -> None:
        self.engine = engine
        self.clock = clock

    # -- reads ---------------------------------------------------------------------------------------

    def get(self, name: str, version: int | None = None) -> ModelRecord:
        """One version with its history; without ``version``: the active one, else the newest."""
        with Session(self.engine) as session:
            row = self._row(session, name, version) if version is not None else self._default_row(session, name)
            return ModelRecord.of(row, self._history(session, row.id))

    def exists(self, name: str, version: int) -> bool:
        """Whether ``name@version`` is registered (in any status)."""
        with Session(self.engine) as session:
            query = select(ModelVersion.id).where(ModelVersion.name == name, ModelVersion.version == version)
            return session.scalar(query) is not None

    def versions(self, name: str | None = None, statuses: tuple[ModelStatus, ...] | None = None) -> list[ModelRecord]:
        """Versions sorted by name and version, optionally of one name and some statuses."""
        query = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
        if name is not None:
            query = query.where(ModelVersion.name == name)
        if statuses is not None:
            query = query.where(ModelVersion.status.in_(statuses))
        with Session(self.engine) as session:
            return [ModelRecord.of(row) for row in session.scalars(query)]

    def active(self) -> list[ModelRecord]:
        """The active version of every name (what the ensemble serves)."""
        return self.versions(statuses=("active",))

    def next_version(self, name: str) -> int:
        """One more than the highest version registered under ``name`` (1 for a new name)."""
        with Session(self.engine) as session:
            highest = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name))
            return int(highest or 0) + 1

    def history(self, name: str, version: int) -> list[TransitionRecord]:
        """Every status change of one version, oldest first."""
        with Session(self.engine) as session:
            return list(self._history(session, self._row(session, name, version).id))

    # -- writes --------------------------------------------------------------------------------------

    def add(
        self,
        new: NewModelVersion,
        *,
        registered_at: datetime | None = None,
        status: ModelStatus = "validated",
        actor: str | None = None,
        reason: str = "promoted on registration",
        within: Callable[[ModelRecord], None] | None = None,
    ) -> ModelRecord:
        """Insert a version whose gates passed, with its history, in one transaction.

        ``within`` runs inside that transaction after the insert (the registration copies the artifact
        there); if it raises, nothing is written. A ``status`` beyond ``validated`` (the packaged-zoo import)
        records each step up to it in the history, with ``reason``.
        """
        if status not in STATUSES or status == "retired":
            raise RegistryError(f"a new version cannot start as {status!r}")
        now = self.clock()
        started = registered_at or now
        path = _path_to(status)
        row = ModelVersion(
            name=new.name,
            version=new.version,
            family=new.family,
            artifact_format=new.artifact_format,
            leads=new.leads,
            sample_rate_hz=new.sample_rate_hz,
            window_s=new.window_s,
            input_kind=new.input_kind,
            artifact_sha256=new.artifact_sha256,
            artifact_path=new.artifact_path,
            card=new.card,
            metrics=new.metrics,
            latency_ms={str(k): float(v) for k, v in new.latency_ms.items()},
            gates=new.gates,
            owner=new.owner,
            status=status,
            registered_at=started,
            updated_at=now,
        )
        for step in path[1:]:
            setattr(row, _STAMP[step], now)
        try:
            with Session(self.engine) as session, session.begin():
                if session.scalar(
                    select(ModelVersion.id).where(ModelVersion.name == new.name, ModelVersion.version == new.version)
                ) is not None:
                    raise AlreadyRegistered(f"{new.name}@{new.version} is already registered; versions are immutable")
                if status == "active":
                    self._retire_active(session, new.name, f"{new.name}@{new.version}", actor, now)
                session.add(row)
                session.flush()
                previous: ModelStatus | None = None
                for step in path:
                    at = started if step == "registered" else now
                    why = _STEP_REASON.get(step, reason)
                    session.add(ModelTransition(model_id=row.id, from_status=previous, to_status=step, at=at,
                                                actor=actor, reason=why))
                    previous = step
                session.flush()
                record = ModelRecord.of(row)
                if within is not None:
                    within(record)
        except IntegrityError as exc:
            raise AlreadyRegistered(
                f"{new.name}@{new.version} was registered (or activated) concurrently: {exc.orig}"
            ) from exc
        return self.get(new.name, new.version)

    def promote(self, name: str, version: int, *, actor: str | None = None, reason: str | None = None) -> ModelRecord:
        """Move a version one step forward: ``validated -> shadow`` or ``shadow -> active``."""
        with Session(self.engine) as session:
            status = cast(ModelStatus, self._row(session, name, version).status)
        target = PROMOTION.get(status)
        if target is None:
            raise TransitionRefused(_no_promotion(f"{name}@{version}", status))
        return self.transition(name, version, target, actor=actor, reason=reason or f"promoted to {target}",
                               expected=status)

    def retire(self, name: str, version: int, *, actor: str | None = None, reason: str | None = None) -> ModelRecord:
        """Retire a version from any status but ``retired``."""
        return self.transition(name, version, "retired", actor=actor, reason=reason or "retired")

    def transition(
        self,
        name: str,
        version: int,
        to_status: ModelStatus,
        *,
        actor: str | None = None,
        reason: str = "",
        expected: ModelStatus | None = None,
    ) -> ModelRecord:
        """Change a version's status along ``TRANSITIONS``, recording it in the history.

        ``expected`` refuses the change if another writer moved the version since the caller read it.
        Moving to ``active`` retires the version that was active under the same name.
        """
        if to_status not in STATUSES:
            raise TransitionRefused(f"unknown status {to_status!r}; one of {', '.join(STATUSES)}")
        ref = f"{name}@{version}"
        now = self.clock()
        try:
            with Session(self.engine) as session, session.begin():
                row = self._row(session, name, version, lock=True)
                current = cast(ModelStatus, row.status)
                if expected is not None and current != expected:
                    raise TransitionRefused(f"{ref} moved from {expected} to {current} meanwhile; try again")
                if to_status not in TRANSITIONS[current]:
                    raise TransitionRefused(_refusal(ref, current, to_status))
                if to_status == "active":
                    self._retire_active(session, name, ref, actor, now)
                row.status = to_status
                setattr(row, _STAMP[to_status], now)
                row.updated_at = now
                session.add(ModelTransition(model_id=row.id, from_status=current, to_status=to_status, at=now,
                                            actor=actor, reason=reason or f"{current} -> {to_status}"))
        except IntegrityError as exc:
            raise TransitionRefused(f"another version of {name} became active concurrently; try again") from exc
        return self.get(name, version)

    # -- helpers -------------------------------------------------------------------------------------

    def _retire_active(self, session: Session, name: str, successor: str, actor: str | None, now: datetime) -> None:
        query = select(ModelVersion).where(ModelVersion.name == name, ModelVersion.status == "active")
        for old in session.scalars(query.with_for_update()):
            old.status = "retired"
            old.retired_at = now
            old.updated_at = now
            session.add(ModelTransition(model_id=old.id, from_status="active", to_status="retired", at=now,
                                        actor=actor, reason=f"superseded by {successor}"))
        # The old row must be retired before the new one turns active, or the one-active index objects.
        session.flush()

    @staticmethod
    def _row(session: Session, name: str, version: int, *, lock: bool = False) -> ModelVersion:
        query = select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
        row = session.scalar(query.with_for_update() if lock else query)
        if row is None:
            raise ModelNotFound(f"no model {name}@{version} in the registry")
        return row

    @staticmethod
    def _default_row(session: Session, name: str) -> ModelVersion:
        rows = list(session.scalars(select(ModelVersion).where(ModelVersion.name == name)))
        if not rows:
            raise ModelNotFound(f"no model named {name!r} in the registry")
        active = [r for r in rows if r.status == "active"]
        return active[0] if active else max(rows, key=lambda r: r.version)

    @staticmethod
    def _history(session: Session, model_id: int) -> tuple[TransitionRecord, ...]:
        query = select(ModelTransition).where(ModelTransition.model_id == model_id).order_by(ModelTransition.id)
        return tuple(
            TransitionRecord(
                from_status=cast("ModelStatus | None", t.from_status),
                to_status=cast(ModelStatus, t.to_status),
                at=cast(datetime, _utc(t.at)),
                actor=t.actor,
                reason=t.reason,
            )
            for t in session.scalars(query)
        )


def _path_to(status: ModelStatus) -> list[ModelStatus]:
    path: list[ModelStatus] = ["registered"]
    while path[-1] != status:
        path.append("validated" if path[-1] == "registered" else PROMOTION[path[-1]])
    return path


def _no_promotion(ref: str, status: ModelStatus) -> str:
    if status == "registered":
        return f"{ref} is registered: it reaches validated only by passing the registration gates"
    if status == "active":
        return f"{ref} is already active; there is no step above active"
    return f"{ref} is retired; retired is final (register the artifact again as a new version)"


def _refusal(ref: str, current: ModelStatus, target: ModelStatus) -> str:
    allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (final)"
    return f"{ref} cannot go from {current} to {target}; from {current} it may go to {allowed}"
