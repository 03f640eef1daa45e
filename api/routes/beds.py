"""REST reads: beds with their latest score, and a bed's score history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from api.db import MAX_SCORES_LIMIT
from api.deps import StoreDep
from api.schemas import BedPublic, ScorePublic
from ingest.schemas import BED_ID_RE

router = APIRouter(prefix="/api/beds", tags=["beds"])


@router.get("")
def list_beds(store: StoreDep) -> list[BedPublic]:
    """Every bed with its latest score, sorted by bed id."""
    return [BedPublic.of(bed, score) for bed, score in store.latest_per_bed()]


@router.get("/{bed_id}/scores")
def bed_scores(
    store: StoreDep,
    bed_id: Annotated[str, Path(pattern=BED_ID_RE.pattern)],
    limit: Annotated[int, Query(ge=1, le=MAX_SCORES_LIMIT)] = 100,
    since_s: Annotated[float | None, Query(allow_inf_nan=False)] = None,
) -> list[ScorePublic]:
    """The newest ``limit`` scores of a bed, newest first, only windows ending after ``since_s`` if given."""
    if store.get_bed(bed_id) is None:
        raise HTTPException(status_code=404, detail=f"unknown bed {bed_id!r}")
    return [ScorePublic.model_validate(score) for score in store.scores_for_bed(bed_id, limit, since_s)]
