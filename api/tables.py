"""SQL tables of the api: one row per scored window and one row per bed seen."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Double, Engine, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

BED_ID_LENGTH = 64


class Base(DeclarativeBase):
    """Declarative base of the api tables."""


class Score(Base):
    """One scored window; ``(bed_id, window_end_s)`` identifies it, so a replayed score is not stored twice."""

    __tablename__ = "scores"
    # The unique constraint's index (bed_id, window_end_s) also serves every per-bed time query
    # (latest, newest N, since a time), so a second index would only slow the inserts down.
    __table_args__ = (UniqueConstraint("bed_id", "window_end_s", name="uq_scores_bed_id_window_end_s"),)

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
    """A bed that has sent a score; ``*_seen_s`` are the api's receive times, ``last_*`` its latest window."""

    __tablename__ = "beds"

    bed_id: Mapped[str] = mapped_column(String(BED_ID_LENGTH), primary_key=True)
    first_seen_s: Mapped[float] = mapped_column(Double)
    last_seen_s: Mapped[float] = mapped_column(Double)
    last_window_end_s: Mapped[float] = mapped_column(Double)
    last_state: Mapped[str] = mapped_column(String(16))


def init_db(engine: Engine) -> None:
    """Create the tables that do not exist yet (Alembic migrations replace this later)."""
    Base.metadata.create_all(engine)
