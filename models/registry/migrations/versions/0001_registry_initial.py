"""Registry tables: model versions (one active per name) and the append-only transition history.

Revision ID: 0001_registry_initial
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001_registry_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_STATUSES = "status IN ('registered', 'validated', 'shadow', 'active', 'retired')"
_FORMATS = "artifact_format IN ('state_dict', 'torchscript')"


def upgrade() -> None:
    """Create ``registry_model_versions`` and ``registry_transitions``."""
    op.create_table(
        "registry_model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("family", sa.String(length=64), nullable=False),
        sa.Column("artifact_format", sa.String(length=16), nullable=False),
        sa.Column("leads", sa.Integer(), nullable=False),
        sa.Column("sample_rate_hz", sa.Double(), nullable=False),
        sa.Column("window_s", sa.Double(), nullable=False),
        sa.Column("input_kind", sa.String(length=32), nullable=False),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=False),
        sa.Column("artifact_path", sa.String(length=512), nullable=False),
        sa.Column("card", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("latency_ms", sa.JSON(), nullable=False),
        sa.Column("gates", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shadow_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_STATUSES, name=op.f("ck_registry_model_versions_status")),
        sa.CheckConstraint(_FORMATS, name=op.f("ck_registry_model_versions_artifact_format")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_model_versions")),
        sa.UniqueConstraint("name", "version", name="uq_registry_model_versions_name_version"),
    )
    op.create_index(
        op.f("ix_registry_model_versions_status"), "registry_model_versions", ["status"], unique=False
    )
    op.create_index(
        "uq_registry_model_versions_one_active",
        "registry_model_versions",
        ["name"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "registry_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registry_model_versions.id"],
            name=op.f("fk_registry_transitions_model_id_registry_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_transitions")),
    )
    op.create_index(
        op.f("ix_registry_transitions_model_id"), "registry_transitions", ["model_id"], unique=False
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_index(op.f("ix_registry_transitions_model_id"), table_name="registry_transitions")
    op.drop_table("registry_transitions")
    op.drop_index("uq_registry_model_versions_one_active", table_name="registry_model_versions")
    op.drop_index(op.f("ix_registry_model_versions_status"), table_name="registry_model_versions")
    op.drop_table("registry_model_versions")
