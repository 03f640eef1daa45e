"""Pydantic models of what the api accepts and returns (REST and WebSocket share them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.tables import Bed, Score
from ingest.schemas import BED_ID_RE, ScoreRecord, ScoreState

ConsumerState = Literal["starting", "running", "stopped", "disabled"]
BedId = Annotated[str, Field(pattern=BED_ID_RE.pattern)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class ScoreBase(BaseModel):
    """The fields of an ``ingest.schemas.ScoreRecord``, checked: finite numbers, known state, valid bed id."""

    model_config = ConfigDict(from_attributes=True)

    bed_id: BedId
    window_end_s: Finite
    window_s: Annotated[Finite, Field(gt=0)]
    state: ScoreState
    risk: Annotated[Finite, Field(ge=0, le=1)] | None = None
    reason: str | None = None
    quality: Finite | None = None
    heart_rate_bpm: Finite | None = None
    complete: bool = True
    models: list[str] = Field(default_factory=list)
    scored_at_s: Finite = 0.0
    seq_last: int = -1
    extra: dict[str, Finite | int | str | None] = Field(default_factory=dict)

    def to_record(self) -> ScoreRecord:
        """The checked values as a ``ScoreRecord``."""
        body = self.model_dump(include=set(ScoreBase.model_fields))
        body["models"] = tuple(self.models)
        return ScoreRecord(**body)


class ScorePublic(ScoreBase):
    """A stored or live score, with the time the api received it from Kafka."""

    received_at_s: float


class BedPublic(BaseModel):
    """A bed with its latest score."""

    bed_id: str
    first_seen_s: float
    last_seen_s: float
    latest: ScorePublic

    @classmethod
    def of(cls, bed: Bed, score: Score) -> BedPublic:
        """Build from the rows returned by ``ScoreStore.latest_per_bed``."""
        return cls(
            bed_id=bed.bed_id,
            first_seen_s=bed.first_seen_s,
            last_seen_s=bed.last_seen_s,
            latest=ScorePublic.model_validate(score),
        )


class HealthPublic(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"] = "ok"


class ReadyPublic(BaseModel):
    """Readiness with the counters an operator looks at first."""

    ready: bool
    database: Literal["ok", "unreachable"]
    consumer: ConsumerState
    scores_received: int
    undecodable: int
    rejected: int
    written: int
    duplicates: int
    write_errors: int
    ws_clients: int
    ws_dropped: int
    last_error: str | None = None


class ScoreMessage(BaseModel):
    """WebSocket message for one new score; ``sent_at_s`` is the server clock when it was broadcast."""

    type: Literal["score"] = "score"
    score: ScorePublic
    sent_at_s: float


class SnapshotMessage(BaseModel):
    """First WebSocket message: every bed with its latest stored score."""

    type: Literal["snapshot"] = "snapshot"
    beds: list[BedPublic]
    sent_at_s: float
