"""Fixtures of the api tests: score factories, an app on a real database, and its test client."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api import ApiConfig, create_app
from api.consumer import ScoreConsumer
from ingest.schemas import PlanRecord, ScoreRecord

ScoreFactory = Callable[..., ScoreRecord]
PlanFactory = Callable[..., PlanRecord]


@pytest.fixture
def make_score() -> ScoreFactory:
    """Builds valid ``ScoreRecord``s; keyword arguments override the defaults."""
    counter = itertools.count()

    def make(bed_id: str = "bed-1", window_end_s: float | None = None, **fields: Any) -> ScoreRecord:
        end = 1_700_000_000.0 + next(counter) if window_end_s is None else window_end_s
        body: dict[str, Any] = {
            "window_s": 30.0,
            "state": "ok",
            "risk": 0.42,
            "quality": 0.9,
            "heart_rate_bpm": 72.0,
            "models": ("cnn1d", "hrv-gbm"),
            "scored_at_s": end + 0.05,
            "seq_last": 7,
        }
        body.update(fields)
        return ScoreRecord(bed_id=bed_id, window_end_s=end, **body)

    return make


@pytest.fixture
def make_plan() -> PlanFactory:
    """Builds valid ``PlanRecord``s as a worker publishes them; keyword arguments override the defaults."""

    def make(worker_id: str = "host-a:1", plan_id: int = 0, **fields: Any) -> PlanRecord:
        body: dict[str, Any] = {
            "at_s": 1_700_000_000.0 + 60 * plan_id, "reason": "start" if plan_id == 0 else "load: beds 4 -> 8",
            "members": ("rr-af@1", "cnn@2"), "previous": () if plan_id == 0 else ("rr-af@1",),
            "budget_ms": 1000.0, "predicted_p50_ms": 120.0, "predicted_p99_ms": 310.5, "objective": 0.981,
            "beds": 8, "hop_s": 5.0, "windows_per_s": 1.6,
        }
        body.update(fields)
        return PlanRecord(worker_id=worker_id, plan_id=plan_id, **body)

    return make


RawFactory = Callable[..., "ConsumerRecord[bytes, bytes]"]


@pytest.fixture
def make_raw() -> RawFactory:
    """Builds the Kafka records that the consumer decodes: ``make_raw(value, offset=...)``."""

    def make(value: bytes | None, offset: int = 0, topic: str = "t.scores", partition: int = 0) -> Any:
        return ConsumerRecord(
            topic=topic, partition=partition, offset=offset, timestamp=0, timestamp_type=0, key=None,
            value=value, checksum=None, serialized_key_size=0, serialized_value_size=len(value or b""), headers=[],
        )

    return make


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    """A fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'api.db'}"


@pytest.fixture
def client_factory() -> Iterator[Callable[[ApiConfig], TestClient]]:
    """Starts apps (lifespan included) for a test and stops them afterwards."""
    clients: list[TestClient] = []

    def make(config: ApiConfig) -> TestClient:
        client = TestClient(create_app(config))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


#: The bootstrap admin token of the test apps (``HOLMES_ADMIN_TOKEN``).
ADMIN_TOKEN = secrets.token_urlsafe(32)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def app_config(database_url: str, **changes: Any) -> ApiConfig:
    """The tests' config: a known admin token, and no retention (the fixtures' windows are from 2023)."""
    return ApiConfig(**{"database_url": database_url, "admin_token": SecretStr(ADMIN_TOKEN),
                        "score_retention_s": 0.0, **changes})


@pytest.fixture
def client(client_factory: Callable[[ApiConfig], TestClient], database_url: str) -> TestClient:
    """An app without Kafka on a fresh database (SQLite, and PostgreSQL where reachable)."""
    return client_factory(app_config(database_url))


@pytest.fixture
def login() -> Callable[..., dict[str, str]]:
    """Creates a user of a role through the admin API and returns its ``Authorization`` header."""

    def make(client: TestClient, role: str, username: str | None = None) -> dict[str, str]:
        name = username or f"{role}-{next(_users)}"
        created = client.post("/api/users", headers=ADMIN, json={"username": name, "role": role, "with_token": True})
        assert created.status_code == 201, created.text
        return {"Authorization": f"Bearer {created.json()['token']}"}

    return make


_users = itertools.count(1)


@pytest.fixture
def feed() -> Callable[[TestClient, list[ScoreRecord]], int]:
    """Runs the app's ``handle_batch`` on the app's event loop, as the Kafka loop would."""

    def run(client: TestClient, records: list[ScoreRecord]) -> int:
        assert client.portal is not None
        consumer: ScoreConsumer = client.app.state.services.consumer  # type: ignore[attr-defined]
        return int(client.portal.call(consumer.handle_batch, records))

    return run
