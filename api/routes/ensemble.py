"""Operations: the ensemble plans in force and their history, what the api measures of the stream, dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from api.auth import require_read
from api.deps import MetricsDep, PlansDep, PlanStoreDep, get_services
from api.plans import MAX_INT, MAX_PLANS_LIMIT
from api.schemas import DeadLettersPublic, EnsembleStatus, PlanPage, PlanPublic
from api.tables import WORKER_ID_LENGTH

router = APIRouter(prefix="/api", tags=["operations"], dependencies=[Depends(require_read)])


# async: it reads only memory, on the event loop that the plan and score readers update (no torn reads).
@router.get("/ensemble")
async def ensemble_status(request: Request, metrics: MetricsDep, plans: PlansDep) -> EnsembleStatus:
    """The selection each worker has in force, its budget, predicted vs measured latency and the recent re-plans,
    with the served models, throughput, windows, latency and dead letters measured here.

    Before any worker's plan has been read, ``selection``, ``budget_ms``, ``predicted_vs_measured_latency`` and
    ``replans`` are ``{"available": false, "reason": ...}`` saying why.
    """
    by_status = metrics.by_status
    return EnsembleStatus(
        served_models=metrics.served_models(),
        throughput_windows_per_s=round(metrics.throughput_windows_per_s(), 3),
        throughput_window_s=metrics.throughput_window_s,
        windows_scored=by_status["ok"] + by_status["partial"] + by_status["incomplete"],
        windows_unscorable=by_status["unscorable"],
        windows_partial=by_status["partial"],
        windows_lost=metrics.lost,
        selection_changes=plans.changes,
        provenance_changes=metrics.model_changes,
        latency=metrics.latency(),
        dead_letters=get_services(request).deadletters.snapshot(),
        plans=plans.snapshot(),
        selection=plans.selection(),
        budget_ms=plans.budget(),
        predicted_vs_measured_latency=plans.latency(),
        replans=plans.replans(),
    )


@router.get("/ensemble/plans")
def plan_history(
    store: PlanStoreDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PLANS_LIMIT)] = 50,
    before: Annotated[int | None, Query(ge=1, le=MAX_INT, description="`next_before` of the previous page")] = None,
    worker_id: Annotated[str | None, Query(min_length=1, max_length=WORKER_ID_LENGTH,
                                           pattern=r"^[^\x00-\x1f\x7f]+$")] = None,
) -> PlanPage:
    """Every stored plan (a worker's selections and why), newest first; one worker's with ``worker_id``."""
    rows = store.page(limit, before, worker_id)
    return PlanPage(items=[PlanPublic.model_validate(r) for r in rows],
                    next_before=rows[-1].id if len(rows) == limit else None)


@router.get("/deadletters")
def dead_letters(request: Request) -> DeadLettersPublic:
    """Dead letters by reason since the topic's start, and the most recent ones (without payload)."""
    return get_services(request).deadletters.snapshot()
