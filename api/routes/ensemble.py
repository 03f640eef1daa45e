"""Operations: what the api measures of the ensemble and the stream, and the dead letters."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from api.auth import require_read
from api.deps import MetricsDep, get_services
from api.schemas import DeadLettersPublic, EnsembleStatus, Unavailable

router = APIRouter(prefix="/api", tags=["operations"], dependencies=[Depends(require_read)])

_SELECTOR = "the ensemble selector (issue 5) does not publish its selection, budget or re-plans yet"


@router.get("/ensemble")
def ensemble_status(request: Request, metrics: MetricsDep) -> EnsembleStatus:
    """Served models (from score provenance), throughput, windows, latency and dead letters, measured here.

    The selection, budget, predicted latency and re-plans are reported as unavailable until the selector
    publishes them.
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
        selection_changes=metrics.changes,
        latency=metrics.latency(),
        dead_letters=get_services(request).deadletters.snapshot(),
        selection=Unavailable(reason=_SELECTOR),
        budget_ms=Unavailable(reason=_SELECTOR),
        predicted_vs_measured_latency=Unavailable(
            reason="predicted latency comes from the selector's latency profile (issue 5); the measured "
                   "end-to-end latency is under 'latency'"),
        replans=Unavailable(reason=_SELECTOR),
    )


@router.get("/deadletters")
def dead_letters(request: Request) -> DeadLettersPublic:
    """Dead letters by reason since the topic's start, and the most recent ones (without payload)."""
    return get_services(request).deadletters.snapshot()
