"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response, status
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.deps import ConsumerDep, HubDep, StoreDep
from api.schemas import HealthPublic, ReadyPublic

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> HealthPublic:
    """The process answers; nothing else is checked."""
    return HealthPublic()


@router.get("/readyz", responses={503: {"model": ReadyPublic}})
async def readyz(store: StoreDep, consumer: ConsumerDep, hub: HubDep, response: Response) -> ReadyPublic:
    """The database answers and the consumer runs (or is disabled); 503 otherwise."""
    database: Literal["ok", "unreachable"] = "ok"
    try:
        await run_in_threadpool(store.ping)
    except SQLAlchemyError:
        database = "unreachable"
    state = consumer.state
    stats = consumer.stats
    ready = database == "ok" and state in ("running", "disabled")
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return ReadyPublic(
        ready=ready,
        database=database,
        consumer=state,
        scores_received=stats.received,
        undecodable=stats.undecodable,
        rejected=stats.rejected,
        written=stats.written,
        duplicates=stats.duplicates,
        write_errors=stats.write_errors,
        ws_clients=hub.clients,
        ws_dropped=hub.dropped,
        last_error=stats.last_error,
    )
