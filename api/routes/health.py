"""Liveness and readiness probes, and the Prometheus metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Response, status
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.auth import require_read
from api.deps import ConsumerDep, HubDep, MetricsDep, StoreDep
from api.metrics import CONTENT_TYPE
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


@router.get(
    "/metrics",
    dependencies=[Depends(require_read)],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}},
                     "description": "Prometheus text exposition"}},
)
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics: end-to-end and HTTP latency histograms, windows by status, lost windows, dead letters,
    model selection changes, alert events, consumer and WebSocket counters, and each worker's scoring-queue depth
    (last and highest)."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
