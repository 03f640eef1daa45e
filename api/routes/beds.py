"""REST reads of beds: each bed's latest score and status, a bed's history, trends and alert events."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from api.alerts import AlertStore
from api.auth import require_read
from api.config import ApiConfig
from api.db import MAX_SCORES_LIMIT, ScoreStore
from api.deps import AlertsDep, ConfigDep, StoreDep
from api.schemas import AlertEventPublic, BedPublic, ScorePublic, TrendPublic
from ingest.schemas import BED_ID_RE

router = APIRouter(prefix="/api/beds", tags=["beds"], dependencies=[Depends(require_read)])

BedIdPath = Annotated[str, Path(pattern=BED_ID_RE.pattern)]
Seconds = Annotated[float | None, Query(allow_inf_nan=False, ge=0, le=1e11)]
_NOT_FOUND = {404: {"description": "unknown bed"}}


def beds_now(store: ScoreStore, alerts: AlertStore, config: ApiConfig) -> list[BedPublic]:
    """Every bed with its latest score, status (stale after two hops without a score) and open alert."""
    now = time.time()
    open_alerts = alerts.open_by_bed()
    return [BedPublic.of(bed, score, now, config.stale_after_s, open_alerts.get(bed.bed_id))
            for bed, score in store.latest_per_bed()]


@router.get("")
def list_beds(store: StoreDep, alerts: AlertsDep, config: ConfigDep) -> list[BedPublic]:
    """Every bed with its latest score (with ECG strip), status, score age and the alert needing attention."""
    return beds_now(store, alerts, config)


@router.get("/{bed_id}", responses=_NOT_FOUND)
def get_bed(store: StoreDep, alerts: AlertsDep, config: ConfigDep, bed_id: BedIdPath) -> BedPublic:
    """One bed, as in the list."""
    found = store.latest_of(bed_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"unknown bed {bed_id!r}")
    bed, score = found
    return BedPublic.of(bed, score, time.time(), config.stale_after_s, alerts.open_by_bed().get(bed_id))


@router.get("/{bed_id}/scores", responses=_NOT_FOUND)
def bed_scores(
    store: StoreDep,
    bed_id: BedIdPath,
    limit: Annotated[int, Query(ge=1, le=MAX_SCORES_LIMIT)] = 100,
    since_s: Seconds = None,
    until_s: Seconds = None,
) -> list[ScorePublic]:
    """The newest ``limit`` scores of a bed, newest first, windows ending in ``(since_s, until_s]`` if given.

    For paging through long ranges use ``GET /api/scores`` and its cursor.
    """
    if store.get_bed(bed_id) is None:
        raise HTTPException(status_code=404, detail=f"unknown bed {bed_id!r}")
    return [ScorePublic.model_validate(s) for s in store.scores_for_bed(bed_id, limit, since_s, until_s)]


@router.get("/{bed_id}/events", responses=_NOT_FOUND)
def bed_events(
    store: StoreDep, alerts: AlertsDep, bed_id: BedIdPath, since_s: Seconds = None, until_s: Seconds = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
) -> list[AlertEventPublic]:
    """The bed's alert events (raised, acknowledged, cleared), oldest first, ``at_s`` (server clock) in range."""
    if store.get_bed(bed_id) is None:
        raise HTTPException(status_code=404, detail=f"unknown bed {bed_id!r}")
    return [AlertEventPublic.model_validate(e) for e in alerts.events(bed_id, since_s, until_s, limit)]


trends_router = APIRouter(prefix="/api/trends", tags=["beds"], dependencies=[Depends(require_read)])


@trends_router.get("")
def trends(
    store: StoreDep, config: ConfigDep,
    window_s: Annotated[float | None, Query(gt=0, le=7 * 24 * 3600, allow_inf_nan=False)] = None,
    bed_id: Annotated[str | None, Query(pattern=BED_ID_RE.pattern)] = None,
) -> list[TrendPublic]:
    """Each bed's risk over the ``window_s`` (default: the sparkline's hour) before its latest window."""
    series = store.trends(window_s or config.trend_window_s, bed_id)
    return [TrendPublic(bed_id=bed, window_end_s=[p[0] for p in points], risk=[p[1] for p in points],
                        state=[p[2] for p in points]) for bed, points in sorted(series.items())]
