"""SQL tables of the api: scores, beds, alerts and their events, users, sessions, the audit log, ensemble plans.

The schema is created and changed only by the Alembic migrations in ``api/migrations`` (version table
``alembic_version_api``); these classes must match the newest migration.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

BED_ID_LENGTH = 64
USERNAME_LENGTH = 64
WORKER_ID_LENGTH = 200
REASON_LENGTH = 500
REASON_KIND_LENGTH = 32


class Base(DeclarativeBase):
    """Declarative base of the api tables."""


class Score(Base):
    """One scored window; ``(bed_id, window_end_s)`` identifies it, so a replayed score is not stored twice."""

    __tablename__ = "scores"
    # The unique constraint's index (bed_id, window_end_s) also serves every per-bed time query
    # (latest, newest N, since a time); the window_end_s index serves retention and the all-bed trends.
    __table_args__ = (
        UniqueConstraint("bed_id", "window_end_s", name="uq_scores_bed_id_window_end_s"),
        Index("ix_scores_window_end_s", "window_end_s"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bed_id: Mapped[str] = mapped_column(String(BED_ID_LENGTH))
    window_end_s: Mapped[float] = mapped_column(Double)
    window_s: Mapped[float] = mapped_column(Double)
    state: Mapped[str] = mapped_column(String(16))
    risk: Mapped[float | None] = mapped_column(Double)
    reason: Mapped[str | None] = mapped_column(Text)
    quality: Mapped[float | None] = mapped_column(Double)
    heart_rate_bpm: Mapped[float | None] = mapped_column(Double)
    complete: Mapped[bool]
    models: Mapped[list[str]] = mapped_column(JSON)
    scored_at_s: Mapped[float] = mapped_column(Double)
    seq_last: Mapped[int]
    extra: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at_s: Mapped[float] = mapped_column(Double)


class Bed(Base):
    """A bed that has sent a score: its latest window, ECG strip, provenance and alert streaks.

    ``*_seen_s`` are the api's receive times; ``last_*`` describe the newest window. ``alert_above`` and
    ``alert_below`` count consecutive ok windows at or over the alert threshold / under the clear threshold,
    and ``open_alert_id`` is the bed's uncleared alert, so that alert evaluation survives restarts and replays.
    """

    __tablename__ = "beds"

    bed_id: Mapped[str] = mapped_column(String(BED_ID_LENGTH), primary_key=True)
    first_seen_s: Mapped[float] = mapped_column(Double)
    last_seen_s: Mapped[float] = mapped_column(Double)
    last_window_end_s: Mapped[float] = mapped_column(Double)
    last_state: Mapped[str] = mapped_column(String(16))
    strip_hz: Mapped[float | None] = mapped_column(Double, nullable=True)
    strip_mv: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    last_models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    windows_lost: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    alert_above: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    alert_below: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    open_alert_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Alert(Base):
    """An AF alert of one bed: raised by persistence over the threshold, cleared by persistence under it."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_bed_id_raised_at_s", "bed_id", "raised_at_s"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bed_id: Mapped[str] = mapped_column(String(BED_ID_LENGTH))
    state: Mapped[str] = mapped_column(String(16))  # active | cleared
    threshold: Mapped[float] = mapped_column(Double)
    raised_at_s: Mapped[float] = mapped_column(Double)
    raised_window_end_s: Mapped[float] = mapped_column(Double)
    peak_risk: Mapped[float] = mapped_column(Double)
    last_risk: Mapped[float] = mapped_column(Double)
    cleared_at_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    cleared_window_end_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    acknowledged_at_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(USERNAME_LENGTH), nullable=True)
    ack_note: Mapped[str | None] = mapped_column(Text, nullable=True)


class AlertEvent(Base):
    """One thing that happened to an alert: ``raised``, ``acknowledged`` or ``cleared`` (never changed)."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ix_alert_events_bed_id_at_s", "bed_id", "at_s"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", name="fk_alert_events_alert_id"), index=True)
    bed_id: Mapped[str] = mapped_column(String(BED_ID_LENGTH))
    kind: Mapped[str] = mapped_column(String(16))
    at_s: Mapped[float] = mapped_column(Double)
    window_end_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    risk: Mapped[float | None] = mapped_column(Double, nullable=True)
    actor: Mapped[str | None] = mapped_column(String(USERNAME_LENGTH), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class User(Base):
    """A person or service; ``token_hash`` is the SHA-256 of its API token, ``password_hash`` an scrypt hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_LENGTH), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at_s: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str | None] = mapped_column(String(USERNAME_LENGTH), nullable=True)


class UserSession(Base):
    """A sign-in: the SHA-256 of its bearer token, its user and when it expires."""

    __tablename__ = "user_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", name="fk_user_sessions_user_id"), index=True)
    created_at_s: Mapped[float] = mapped_column(Double)
    expires_at_s: Mapped[float] = mapped_column(Double, index=True)


class AuditEntry(Base):
    """Append-only: who did what, when, with what outcome (database triggers refuse UPDATE and DELETE)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at_s: Mapped[float] = mapped_column(Double, index=True)
    actor: Mapped[str] = mapped_column(String(USERNAME_LENGTH))
    actor_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    action: Mapped[str] = mapped_column(String(128))
    target: Mapped[str | None] = mapped_column(String(255), nullable=True)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    remote: Mapped[str | None] = mapped_column(String(64), nullable=True)


class EnsemblePlan(Base):
    """An ensemble selection a worker put in force (``ingest.schemas.PlanRecord``), as read from the plans topic.

    ``(worker_id, plan_id)`` identifies a plan, so a plan read again (a replayed topic) is stored once;
    ``reason_kind`` is the reason's first word (``start``, ``load``...), ``received_at_s`` the api's clock.
    """

    __tablename__ = "ensemble_plans"
    __table_args__ = (UniqueConstraint("worker_id", "plan_id", name="uq_ensemble_plans_worker_id_plan_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(WORKER_ID_LENGTH))
    plan_id: Mapped[int] = mapped_column(BigInteger)
    at_s: Mapped[float] = mapped_column(Double)
    reason: Mapped[str] = mapped_column(String(REASON_LENGTH))
    reason_kind: Mapped[str] = mapped_column(String(REASON_KIND_LENGTH))
    members: Mapped[list[str]] = mapped_column(JSON)
    previous: Mapped[list[str]] = mapped_column(JSON)
    budget_ms: Mapped[float] = mapped_column(Double)
    predicted_p50_ms: Mapped[float] = mapped_column(Double)
    predicted_p99_ms: Mapped[float] = mapped_column(Double)
    objective: Mapped[float] = mapped_column(Double)
    beds: Mapped[int] = mapped_column(BigInteger)
    hop_s: Mapped[float] = mapped_column(Double)
    windows_per_s: Mapped[float] = mapped_column(Double)
    measured_p99_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    slowdown: Mapped[float] = mapped_column(Double)
    received_at_s: Mapped[float] = mapped_column(Double)


def init_db(engine: Engine) -> None:
    """Bring the api tables to the newest migration (kept for callers of the pre-Alembic name)."""
    from api.migrate import upgrade_api

    upgrade_api(engine)
