"""Schemathesis against the app's own OpenAPI schema, in-process (ASGI): no request gets a server error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the importorskip above
from schemathesis.python import asgi  # noqa: E402

from api import create_app  # noqa: E402
from api.db import ScoreStore, make_engine  # noqa: E402
from api.migrate import upgrade_api  # noqa: E402
from api.plans import PlanStore  # noqa: E402
from ingest.schemas import PlanRecord, ScoreRecord  # noqa: E402

from .conftest import ADMIN, app_config  # noqa: E402

#: Examples per operation: enough to reach the validation's edges, small enough for a 2-core machine.
EXAMPLES = 15
REGISTRY_PREFIX = "/api/models"


@pytest.fixture
def api_schema(tmp_path: Path, data_dir: Path, make_score: Callable[..., ScoreRecord],
               make_plan: Callable[..., PlanRecord]) -> Iterator[Any]:
    """The schema of an app on a fresh SQLite file, with model uploads enabled."""
    from models.registry.gates import GateConfig
    from models.registry.registration import RegistrationConfig

    registration = RegistrationConfig(artifact_root=tmp_path / "models", data_dir=data_dir,
                                      gates=GateConfig(batch_sizes=(1,)))
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    # Some history, an alert, a strip and ensemble plans, so that the reads serialise real rows.
    engine = make_engine(url)
    upgrade_api(engine)
    risks = [0.1, 0.9, 0.95, 0.9, 0.2, 0.1, 0.1, 0.1]
    ScoreStore(engine).write([make_score(f"bed-{b}", 1_700_000_000.0 + 5 * i, risk=r, strip_hz=50.0,
                                         strip_mv=(0.1, 0.5, -0.2)) for b in (1, 2) for i, r in enumerate(risks)],
                             received_at_s=1_700_000_100.0)
    PlanStore(engine).add_many([make_plan("w1", 0), make_plan("w1", 1), make_plan("w2", 0)], 1_700_000_100.0)
    engine.dispose()
    app = create_app(app_config(url), registration)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    asgi.shutdown_lifespans()


def server_errors(schema: Any, registry: bool) -> tuple[int, list[str]]:
    """Fuzz the registry's operations or all the others; returns (operations, failures)."""
    operations = [r.ok() for r in schema.get_all_operations()]
    chosen = [op for op in operations if op.path.startswith(REGISTRY_PREFIX) == registry]
    failures: list[str] = []
    for operation in chosen:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            # As admin, so that requests get past the role checks into the handlers (anonymous ones stop at 401).
            try:
                status = case.call(headers=ADMIN).status_code
            except Exception as exc:  # noqa: BLE001 - the in-process client re-raises what would be a 500
                status, detail = 500, f"{type(exc).__name__}: {exc}"
            else:
                detail = ""
            if status >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {status} {detail[:200]}")

        call()
    return len(chosen), failures


def test_no_operation_gets_a_server_error(api_schema: Any) -> None:
    count, failures = server_errors(api_schema, registry=False)
    assert count > 20
    assert failures == []


def test_no_model_registry_operation_gets_a_server_error(api_schema: Any) -> None:
    count, failures = server_errors(api_schema, registry=True)
    assert count >= 4
    assert failures == []
