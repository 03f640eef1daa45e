"""Ensemble plans: every selection a worker put in force, read from the plans topic.

Revision ID: 0003_api_ensemble_plans
Revises: 0002_api_dashboard
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_api_ensemble_plans"
down_revision: str | None = "0002_api_dashboard"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``ensemble_plans``, unique on ``(worker_id, plan_id)``."""
    op.create_table(
        "ensemble_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("at_s", sa.Double(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("reason_kind", sa.String(length=32), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("previous", sa.JSON(), nullable=False),
        sa.Column("budget_ms", sa.Double(), nullable=False),
        sa.Column("predicted_p50_ms", sa.Double(), nullable=False),
        sa.Column("predicted_p99_ms", sa.Double(), nullable=False),
        sa.Column("objective", sa.Double(), nullable=False),
        sa.Column("beds", sa.BigInteger(), nullable=False),
        sa.Column("hop_s", sa.Double(), nullable=False),
        sa.Column("windows_per_s", sa.Double(), nullable=False),
        sa.Column("measured_p99_ms", sa.Double(), nullable=True),
        sa.Column("slowdown", sa.Double(), nullable=False),
        sa.Column("received_at_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ensemble_plans"),
        sa.UniqueConstraint("worker_id", "plan_id", name="uq_ensemble_plans_worker_id_plan_id"),
    )


def downgrade() -> None:
    """Drop ``ensemble_plans`` (the plan history with it; the topic still holds what its retention kept)."""
    op.drop_table("ensemble_plans")
