"""The api's Alembic tree: from nothing or from a pre-migration database to head, matching the tables."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from api.db import make_engine
from api.migrate import BASELINE_REVISION, VERSION_TABLE, alembic_config, api_revision, head_revision, upgrade_api
from api.tables import Base


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def test_upgrade_creates_everything_and_is_idempotent(engine: Engine) -> None:
    upgrade_api(engine)
    upgrade_api(engine)
    assert api_revision(engine) == head_revision()
    tables = set(sa.inspect(engine).get_table_names())
    assert tables >= {"scores", "beds", "alerts", "alert_events", "users", "user_sessions", "audit_log",
                      "ensemble_plans", VERSION_TABLE}


def test_the_tables_match_the_newest_migration(engine: Engine) -> None:
    upgrade_api(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diffs = [d for d in compare_metadata(context, Base.metadata)
                 if not (d[0] in ("remove_table", "add_table") and str(d[1]).startswith(("registry_", "alembic_")))]
    assert diffs == []


def test_a_database_made_before_migrations_keeps_its_scores(engine: Engine) -> None:
    upgrade_api(engine, BASELINE_REVISION)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))  # as create_all left it
        conn.execute(sa.text(
            "INSERT INTO scores (bed_id, window_end_s, window_s, state, risk, complete, models, scored_at_s, seq_last, "
            "extra, received_at_s) VALUES ('bed-1', 5.0, 10.0, 'ok', 0.4, true, '[]', 5.1, 3, '{}', 6.0)"))
        conn.execute(sa.text("INSERT INTO beds VALUES ('bed-1', 6.0, 6.0, 5.0, 'ok')"))
    upgrade_api(engine)
    assert api_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT bed_id, risk FROM scores")).all() == [("bed-1", 0.4)]
        assert conn.execute(sa.text("SELECT windows_lost, alert_above FROM beds")).all() == [(0, 0)]


def test_the_registry_tree_lives_beside_it(engine: Engine) -> None:
    from models.registry import registry_revision, upgrade_registry

    upgrade_api(engine)
    upgrade_registry(engine)
    assert api_revision(engine) == head_revision() and registry_revision(engine) is not None


def _downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def test_the_plans_table_downgrades_and_upgrades_again(engine: Engine) -> None:
    from api.plans import PlanStore
    from ingest.schemas import PlanRecord

    upgrade_api(engine)
    plan = PlanRecord(worker_id="w1", plan_id=0, at_s=1.0, reason="start", members=("a@1",), previous=(),
                      budget_ms=1000.0, predicted_p50_ms=100.0, predicted_p99_ms=300.0, objective=0.9, beds=4,
                      hop_s=5.0, windows_per_s=0.8)
    assert len(PlanStore(engine).add_many([plan], 2.0).inserted) == 1
    _downgrade(engine, "0002_api_dashboard")
    assert api_revision(engine) == "0002_api_dashboard"
    assert "ensemble_plans" not in sa.inspect(engine).get_table_names()
    upgrade_api(engine)
    assert api_revision(engine) == head_revision() == "0003_api_ensemble_plans"
    store = PlanStore(engine)
    assert store.counts() == (0, 0) and len(store.add_many([plan, plan], 3.0).inserted) == 1
