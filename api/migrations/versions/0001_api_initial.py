"""The tables as ``create_all`` made them before migrations: scores and beds.

Revision ID: 0001_api_initial
Revises:
Create Date: 2026-11-24

A database created by ``create_all`` (no ``alembic_version_api`` table, a ``scores`` table) is stamped at this
revision by ``api.migrate.upgrade_api`` before upgrading, so existing score history is kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001_api_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``scores`` and ``beds``."""
    op.create_table(
        "scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bed_id", sa.String(length=64), nullable=False),
        sa.Column("window_end_s", sa.Double(), nullable=False),
        sa.Column("window_s", sa.Double(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("risk", sa.Double(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("quality", sa.Double(), nullable=True),
        sa.Column("heart_rate_bpm", sa.Double(), nullable=True),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("scored_at_s", sa.Double(), nullable=False),
        sa.Column("seq_last", sa.Integer(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("received_at_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("bed_id", "window_end_s", name="uq_scores_bed_id_window_end_s"),
    )
    op.create_table(
        "beds",
        sa.Column("bed_id", sa.String(length=64), nullable=False),
        sa.Column("first_seen_s", sa.Double(), nullable=False),
        sa.Column("last_seen_s", sa.Double(), nullable=False),
        sa.Column("last_window_end_s", sa.Double(), nullable=False),
        sa.Column("last_state", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("bed_id"),
    )


def downgrade() -> None:
    """Drop ``beds`` and ``scores``."""
    op.drop_table("beds")
    op.drop_table("scores")
