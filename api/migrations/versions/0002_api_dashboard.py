"""Dashboard: bed strips, provenance and alert streaks; alerts and their events; users, sessions; audit log.

Revision ID: 0002_api_dashboard
Revises: 0001_api_initial
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002_api_dashboard"
down_revision: str | None = "0001_api_initial"
branch_labels: str | None = None
depends_on: str | None = None

_APPEND_ONLY = "audit_log is append-only"


def upgrade() -> None:
    """Add the bed columns, the window_end_s index and the new tables; make the audit log append-only."""
    with op.batch_alter_table("beds") as batch:
        batch.add_column(sa.Column("strip_hz", sa.Double(), nullable=True))
        batch.add_column(sa.Column("strip_mv", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("last_models", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("windows_lost", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("alert_above", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("alert_below", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("open_alert_id", sa.Integer(), nullable=True))
    op.create_index("ix_scores_window_end_s", "scores", ["window_end_s"])

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bed_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("raised_at_s", sa.Double(), nullable=False),
        sa.Column("raised_window_end_s", sa.Double(), nullable=False),
        sa.Column("peak_risk", sa.Double(), nullable=False),
        sa.Column("last_risk", sa.Double(), nullable=False),
        sa.Column("cleared_at_s", sa.Double(), nullable=True),
        sa.Column("cleared_window_end_s", sa.Double(), nullable=True),
        sa.Column("acknowledged_at_s", sa.Double(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("ack_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_bed_id_raised_at_s", "alerts", ["bed_id", "raised_at_s"])
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("bed_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at_s", sa.Double(), nullable=False),
        sa.Column("window_end_s", sa.Double(), nullable=True),
        sa.Column("risk", sa.Double(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name="fk_alert_events_alert_id"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
    )
    op.create_index("ix_alert_events_alert_id", "alert_events", ["alert_id"])
    op.create_index("ix_alert_events_bed_id_at_s", "alert_events", ["bed_id", "at_s"])

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at_s", sa.Double(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.CheckConstraint("role IN ('viewer', 'clinician', 'data_scientist', 'admin')", name="ck_users_role"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.UniqueConstraint("token_hash", name="uq_users_token_hash"),
    )
    op.create_table(
        "user_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at_s", sa.Double(), nullable=False),
        sa.Column("expires_at_s", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_user_sessions_user_id"),
        sa.PrimaryKeyConstraint("token_hash", name="pk_user_sessions"),
    )
    op.create_index("ix_user_sessions_user_id", "user_sessions", ["user_id"])
    op.create_index("ix_user_sessions_expires_at_s", "user_sessions", ["expires_at_s"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at_s", sa.Double(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("actor_role", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("remote", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at_s", "audit_log", ["at_s"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    """Drop what ``upgrade`` added (the audit log with it: a downgrade is a decision to lose it)."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_table("audit_log")
    op.drop_table("user_sessions")
    op.drop_table("users")
    op.drop_table("alert_events")
    op.drop_table("alerts")
    op.drop_index("ix_scores_window_end_s", table_name="scores")
    with op.batch_alter_table("beds") as batch:
        for column in ("open_alert_id", "alert_below", "alert_above", "windows_lost", "last_models", "strip_mv",
                       "strip_hz"):
            batch.drop_column(column)
