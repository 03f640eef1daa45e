"""Registry tables and lifecycle on SQLite and PostgreSQL: migrations, transitions, one active per name."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect

from models.registry import (
    PROMOTION,
    TRANSITIONS,
    AlreadyRegistered,
    ModelNotFound,
    NewModelVersion,
    RegistryError,
    RegistryStore,
    TransitionRefused,
    head_revision,
    parse_ref,
    registry_revision,
    upgrade_registry,
)
from models.registry.migrate import VERSION_TABLE
from models.registry.tables import STATUSES, RegistryBase


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> RegistryStore:
    upgrade_registry(engine)
    ticks = iter(range(10_000))
    start = datetime(2026, 11, 24, tzinfo=UTC)
    return RegistryStore(engine, clock=lambda: start + timedelta(seconds=next(ticks)))


def new_version(name: str = "cnn", version: int = 1, **changes: object) -> NewModelVersion:
    body: dict[str, object] = {
        "name": name, "version": version, "family": "cnn1d", "artifact_format": "state_dict", "leads": 1,
        "sample_rate_hz": 250.0, "window_s": 10.0, "input_kind": "waveform", "artifact_sha256": "ab" * 32,
        "artifact_path": f"{'ab' * 32}/{name}@{version}.json", "card": {"name": name},
        "metrics": {"backtest": {"roc_auc": 0.9}}, "latency_ms": {1: 0.5, 64: 3.0}, "gates": [], "owner": "ana",
    }  # fmt: skip
    body.update(changes)
    return NewModelVersion(**body)  # type: ignore[arg-type]


def test_migrations_upgrade_from_empty_and_match_the_tables(engine: Engine) -> None:
    assert registry_revision(engine) is None
    upgrade_registry(engine)
    upgrade_registry(engine)  # a second run has nothing to do
    assert registry_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"registry_model_versions", "registry_transitions", VERSION_TABLE} <= tables
    assert "alembic_version" not in tables  # the api keeps that name free for its own history
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, RegistryBase.metadata) == []


def test_transition_table_is_a_forward_chain_with_retire_from_anywhere() -> None:
    assert set(TRANSITIONS) == set(STATUSES)
    assert all("retired" in TRANSITIONS[s] for s in STATUSES if s != "retired")
    assert TRANSITIONS["retired"] == frozenset()
    assert dict(PROMOTION) == {"validated": "shadow", "shadow": "active"}


def test_add_get_list_round_trip(store: RegistryStore) -> None:
    record = store.add(new_version(), registered_at=datetime(2026, 11, 23, tzinfo=UTC), actor="ana")
    assert record.ref == "cnn@1" and record.status == "validated"
    assert record.latency_ms == {1: 0.5, 64: 3.0}
    assert record.registered_at == datetime(2026, 11, 23, tzinfo=UTC)
    assert record.validated_at is not None and record.validated_at.tzinfo is not None
    assert [(t.from_status, t.to_status) for t in record.history] == [(None, "registered"), ("registered", "validated")]
    assert store.get("cnn") == record
    assert store.exists("cnn", 1) and not store.exists("cnn", 2)
    assert store.next_version("cnn") == 2 and store.next_version("other") == 1
    assert [r.ref for r in store.versions()] == ["cnn@1"]
    with pytest.raises(AlreadyRegistered):
        store.add(new_version())
    with pytest.raises(ModelNotFound):
        store.get("cnn", 2)
    with pytest.raises(ModelNotFound):
        store.get("nothing")


def test_promote_walks_the_lifecycle_and_records_every_step(store: RegistryStore) -> None:
    store.add(new_version())
    assert store.promote("cnn", 1, actor="ana").status == "shadow"
    active = store.promote("cnn", 1, actor="ana", reason="beats v0 in shadow")
    assert active.status == "active" and active.shadow_at is not None and active.active_at is not None
    with pytest.raises(TransitionRefused, match="already active"):
        store.promote("cnn", 1)
    retired = store.retire("cnn", 1, reason="drift")
    assert retired.status == "retired" and retired.retired_at is not None
    assert [(t.to_status, t.reason) for t in retired.history][2:] == [
        ("shadow", "promoted to shadow"), ("active", "beats v0 in shadow"), ("retired", "drift"),
    ]
    times = [t.at for t in retired.history]
    assert times == sorted(times)
    for refused in (store.promote, store.retire):
        with pytest.raises(TransitionRefused, match="retired"):
            refused("cnn", 1)


@pytest.mark.parametrize(
    ("start", "target", "allowed"),
    [(s, t, t in TRANSITIONS[s]) for s in ("validated", "shadow", "active") for t in STATUSES],
)
def test_transition_matches_the_table(store: RegistryStore, start: str, target: str, allowed: bool) -> None:
    store.add(new_version(), status=start)  # type: ignore[arg-type]
    if allowed:
        assert store.transition("cnn", 1, target).status == target  # type: ignore[arg-type]
    else:
        with pytest.raises(TransitionRefused, match=f"cannot go from {start} to {target}"):
            store.transition("cnn", 1, target)  # type: ignore[arg-type]
        assert store.get("cnn", 1).status == start


def test_registered_reaches_validated_only_through_the_gates(store: RegistryStore) -> None:
    store.add(new_version(), status="registered")
    with pytest.raises(TransitionRefused, match="registration gates"):
        store.promote("cnn", 1)
    with pytest.raises(RegistryError):
        store.add(new_version(version=2), status="retired")


def test_promoting_a_new_version_to_active_retires_the_old_one(store: RegistryStore) -> None:
    store.add(new_version(version=1), status="active")
    store.add(new_version(version=2), status="shadow")
    store.add(new_version(name="rr", version=1), status="active")
    store.promote("cnn", 2)
    assert [(r.ref, r.status) for r in store.active()] == [("cnn@2", "active"), ("rr@1", "active")]
    old = store.get("cnn", 1)
    assert old.status == "retired" and old.history[-1].reason == "superseded by cnn@2"
    assert store.get("cnn").version == 2  # the default version of a name is its active one
    store.add(new_version(version=3), status="active")  # an import straight to active also retires
    assert [r.version for r in store.versions("cnn", ("active",))] == [3]


def test_database_refuses_two_active_versions_even_past_the_store(store: RegistryStore, engine: Engine) -> None:
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from models.registry.tables import ModelVersion

    store.add(new_version(version=1), status="active")
    store.add(new_version(version=2), status="shadow")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(update(ModelVersion).where(ModelVersion.version == 2).values(status="active"))


def test_failure_inside_add_leaves_no_row(store: RegistryStore) -> None:
    def boom(_: object) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.add(new_version(), within=boom)
    assert store.versions() == []
    assert not store.exists("cnn", 1)


@pytest.mark.parametrize(("ref", "parsed"), [("rr-af", ("rr-af", None)), ("rr-af@3", ("rr-af", 3))])
def test_parse_ref(ref: str, parsed: tuple[str, int | None]) -> None:
    assert parse_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["", "@1", "rr@", "rr@x"])
def test_parse_ref_refuses(ref: str) -> None:
    with pytest.raises(RegistryError):
        parse_ref(ref)
