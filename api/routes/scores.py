"""REST reads of score history across beds, paged by a cursor."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from api.auth import require_read
from api.db import MAX_SCORES_LIMIT
from api.deps import StoreDep
from api.schemas import ScorePage, ScorePublic
from ingest.schemas import BED_ID_RE

router = APIRouter(prefix="/api/scores", tags=["scores"], dependencies=[Depends(require_read)])

_CURSOR = re.compile(r"^(-?[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?)_([0-9]{1,18})$")
Seconds = Annotated[float | None, Query(allow_inf_nan=False, ge=0, le=1e11)]


def encode_cursor(window_end_s: float, row_id: int) -> str:
    """The cursor pointing after one row."""
    return f"{window_end_s!r}_{row_id}"


def decode_cursor(cursor: str) -> tuple[float, int]:
    """The (window_end_s, id) of a cursor; 422 when malformed."""
    match = _CURSOR.match(cursor)
    if match is None:
        raise HTTPException(status_code=422, detail="malformed cursor: pass next_cursor of the previous page")
    return float(match.group(1)), int(match.group(2))


@router.get("")
def list_scores(
    store: StoreDep,
    bed_id: Annotated[str | None, Query(pattern=BED_ID_RE.pattern)] = None,
    since_s: Seconds = None,
    until_s: Seconds = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SCORES_LIMIT)] = 500,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> ScorePage:
    """Scores newest first, of one bed or all, windows ending in ``(since_s, until_s]``; page with ``cursor``."""
    rows = store.page(bed_id, limit, since_s, until_s, decode_cursor(cursor) if cursor else None)
    next_cursor = encode_cursor(rows[-1].window_end_s, rows[-1].id) if len(rows) == limit else None
    return ScorePage(items=[ScorePublic.model_validate(r) for r in rows], next_cursor=next_cursor)
