"""SQL tables of the model registry: one row per model version and an append-only transition history.

The tables have their own ``MetaData`` and their own Alembic history (``models/registry/migrations``,
version table ``alembic_version_registry``), so they can share a database with the api's tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ARTIFACT_FORMATS",
    "STATUSES",
    "ArtifactFormat",
    "ModelStatus",
    "ModelTransition",
    "ModelVersion",
    "RegistryBase",
]

ModelStatus = Literal["registered", "validated", "shadow", "active", "retired"]
STATUSES: tuple[ModelStatus, ...] = get_args(ModelStatus)
ArtifactFormat = Literal["state_dict", "torchscript"]
ARTIFACT_FORMATS: tuple[ArtifactFormat, ...] = get_args(ArtifactFormat)

NAME_LENGTH = 64
OWNER_LENGTH = 128

# Explicit constraint names, so that migrations on SQLite (batch mode) and PostgreSQL agree.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class RegistryBase(DeclarativeBase):
    """Declarative base of the registry tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ModelVersion(RegistryBase):
    """One registered version of a model; ``(name, version)`` identifies it and never changes.

    A row exists only once every registration gate has passed, so ``status`` starts at ``validated``
    (``registered_at`` is when the registration started, ``validated_at`` when the gates passed).
    """

    __tablename__ = "registry_model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_registry_model_versions_name_version"),
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint(_in("artifact_format", ARTIFACT_FORMATS), name="artifact_format"),
        # At most one active version per name, enforced by the database even under concurrent promotions.
        Index(
            "uq_registry_model_versions_one_active",
            "name",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    version: Mapped[int] = mapped_column(Integer)
    family: Mapped[str] = mapped_column(String(NAME_LENGTH))
    artifact_format: Mapped[str] = mapped_column(String(16))
    leads: Mapped[int] = mapped_column(Integer)
    sample_rate_hz: Mapped[float] = mapped_column(Double)
    window_s: Mapped[float] = mapped_column(Double)
    input_kind: Mapped[str] = mapped_column(String(32))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_path: Mapped[str] = mapped_column(String(512))
    card: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    latency_ms: Mapped[dict[str, float]] = mapped_column(JSON)
    gates: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    owner: Mapped[str | None] = mapped_column(String(OWNER_LENGTH))
    status: Mapped[str] = mapped_column(String(16), index=True)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    validated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    shadow_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    active_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ModelTransition(RegistryBase):
    """One status change of a model version; rows are only ever inserted."""

    __tablename__ = "registry_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registry_model_versions.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str | None] = mapped_column(String(OWNER_LENGTH))
    reason: Mapped[str] = mapped_column(Text)
