"""Shared fixtures: the real data folder, the embedded broker, unique topics, real databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.broker import EmbeddedBroker
from ingest.topics import Topics, ensure_topics

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared PhysioNet folder (``HOLMES_DATA_DIR``, default ``../shared/data``)."""
    path = Path(os.environ.get("HOLMES_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
    if not (path / "mitdb").is_dir() or not (path / "cinc2017").is_dir():
        pytest.skip(f"real data not found at {path}; set HOLMES_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka-protocol broker: ``HOLMES_TEST_KAFKA_BOOTSTRAP`` if set, else embedded Tansu."""
    given = os.environ.get("HOLMES_TEST_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as broker:
        yield broker.bootstrap


@pytest.fixture
def topics_factory(kafka_bootstrap: str) -> Callable[..., Topics]:
    """Creates a fresh set of topics with a unique prefix, so tests never share state."""

    def make(waveform_partitions: int = 4, score_partitions: int = 2) -> Topics:
        topics = Topics.named(f"t{uuid.uuid4().hex[:10]}", waveform_partitions, score_partitions)
        ensure_topics(kafka_bootstrap, topics.all())
        return topics

    return make


def _postgres_admin_url() -> str:
    return os.environ.get("HOLMES_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test; skipped where PostgreSQL is unreachable."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    admin_url = _postgres_admin_url()
    try:
        admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not here"
        pytest.skip(f"PostgreSQL not reachable at {admin_url}: {type(exc).__name__}")
    name = f"holmes_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on a SQLite file and on PostgreSQL (where reachable)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'holmes.db'}"
    return str(request.getfixturevalue("postgres_url"))
