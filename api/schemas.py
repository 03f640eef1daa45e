"""Pydantic models of what the api accepts and returns (REST and WebSocket share them)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from api.security import Role
from api.tables import Alert, AlertEvent, AuditEntry, Bed, Score, User
from ingest.schemas import BED_ID_RE, ScoreRecord, ScoreState

ConsumerState = Literal["starting", "running", "stopped", "disabled"]
BedId = Annotated[str, Field(pattern=BED_ID_RE.pattern)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
#: What a window's score means for the page: ``partial`` = scored with some ensemble members skipped,
#: ``incomplete`` = scored although samples were missing, ``unscorable`` = no risk (reason given).
ScoreStatus = Literal["ok", "partial", "incomplete", "unscorable"]
#: A bed's status: its latest score's, or ``stale`` when no score arrived for two hop intervals.
BedStatus = Literal["ok", "partial", "incomplete", "unscorable", "stale"]
_TRUE = (True, 1, "1", "true", "yes")


def score_status(state: str, complete: bool, extra: Mapping[str, Any] | None) -> ScoreStatus:
    """The page's status of a score.

    ``partial`` is read from the record's ``extra``: ``extra["partial"]`` true (``true``/``1``), or a non-empty
    ``extra["skipped_models"]`` (names, comma-separated, or a count). The ensemble issue sets these.
    """
    if state != "ok":
        return "unscorable"
    if not complete:
        return "incomplete"
    return "partial" if is_partial(extra) else "ok"


def is_partial(extra: Mapping[str, Any] | None) -> bool:
    """Whether a score's ``extra`` says ensemble members were skipped (see ``score_status``)."""
    extra = extra or {}
    skipped = extra.get("skipped_models")
    return extra.get("partial") in _TRUE or skipped not in (None, "", 0, "0")


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
    #: The last seconds of lead 0 for the ECG strip (millivolts at ``strip_hz``); live and latest scores only.
    strip_hz: Annotated[Finite, Field(gt=0, le=500)] | None = None
    strip_mv: Annotated[list[Finite], Field(max_length=2000)] = Field(default_factory=list)

    def to_record(self) -> ScoreRecord:
        """The checked values as a ``ScoreRecord``."""
        # Field by field: ``model_dump`` walks the 200-value strip through the serialiser for every live score.
        return ScoreRecord(
            bed_id=self.bed_id, window_end_s=self.window_end_s, window_s=self.window_s, state=self.state,
            risk=self.risk, reason=self.reason, quality=self.quality, heart_rate_bpm=self.heart_rate_bpm,
            complete=self.complete, models=tuple(self.models), scored_at_s=self.scored_at_s, seq_last=self.seq_last,
            extra=dict(self.extra), strip_hz=self.strip_hz, strip_mv=tuple(self.strip_mv),
        )


class ScorePublic(ScoreBase):
    """A stored or live score, with the time the api received it from Kafka."""

    received_at_s: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> ScoreStatus:
        """``ok``, ``partial``, ``incomplete`` or ``unscorable`` (see ``score_status``)."""
        return score_status(self.state, self.complete, self.extra)


class ScorePage(BaseModel):
    """One page of scores, newest first; pass ``next_cursor`` as ``cursor`` for the next (older) page."""

    items: list[ScorePublic]
    next_cursor: str | None


class AlertPublic(BaseModel):
    """An alert: ``active`` until its bed's risk stays under the clear threshold, acknowledged or not."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    bed_id: str
    state: Literal["active", "cleared"]
    threshold: float
    raised_at_s: float
    raised_window_end_s: float
    peak_risk: float
    last_risk: float
    cleared_at_s: float | None
    cleared_window_end_s: float | None
    acknowledged_at_s: float | None
    acknowledged_by: str | None
    ack_note: str | None


class AlertEventPublic(BaseModel):
    """Something that happened to an alert."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    alert_id: int
    bed_id: str
    kind: Literal["raised", "acknowledged", "cleared"]
    at_s: float
    window_end_s: float | None
    risk: float | None
    actor: str | None
    note: str | None


class AlertDetail(AlertPublic):
    """An alert with its events, oldest first."""

    events: list[AlertEventPublic]

    @classmethod
    def of(cls, alert: Alert, events: list[AlertEvent]) -> AlertDetail:
        return cls(**AlertPublic.model_validate(alert).model_dump(),
                   events=[AlertEventPublic.model_validate(e) for e in events])


class AlertPage(BaseModel):
    """Alerts newest first; pass ``next_before_id`` as ``before_id`` for older ones."""

    items: list[AlertPublic]
    next_before_id: int | None


class AcknowledgeRequest(BaseModel):
    """Optional note of an acknowledgement."""

    note: Annotated[str, Field(max_length=500)] | None = None


class BedPublic(BaseModel):
    """A bed with its latest score (with the ECG strip), status, staleness and the alert needing attention."""

    bed_id: str
    first_seen_s: float
    last_seen_s: float
    latest: ScorePublic
    status: BedStatus
    stale: bool
    #: Seconds since the api last received a score of this bed (server clock).
    age_s: float
    windows_lost: int
    alert: AlertPublic | None = None

    @classmethod
    def of(cls, bed: Bed, score: Score, now_s: float | None = None, stale_after_s: float = 10.0,
           alert: Alert | None = None) -> BedPublic:
        """Build from the rows returned by ``ScoreStore.latest_per_bed``."""
        latest = ScorePublic.model_validate(score)
        if bed.strip_mv:
            latest = latest.model_copy(update={"strip_hz": bed.strip_hz, "strip_mv": list(bed.strip_mv)})
        age_s = max(0.0, (time.time() if now_s is None else now_s) - bed.last_seen_s)
        stale = age_s > stale_after_s
        return cls(
            bed_id=bed.bed_id,
            first_seen_s=bed.first_seen_s,
            last_seen_s=bed.last_seen_s,
            latest=latest,
            status="stale" if stale else latest.status,
            stale=stale,
            age_s=age_s,
            windows_lost=bed.windows_lost or 0,
            alert=AlertPublic.model_validate(alert) if alert is not None else None,
        )


class TrendPublic(BaseModel):
    """A bed's recent history for its sparkline: parallel arrays, oldest first (``risk`` null when unscorable)."""

    bed_id: str
    window_end_s: list[float]
    risk: list[float | None]
    state: list[str]


class UiConfigPublic(BaseModel):
    """What the page needs to know about this server."""

    env: Literal["dev", "production"]
    hop_s: float
    stale_after_s: float
    reads_need_token: bool
    alert_threshold: float
    alert_clear_threshold: float
    alert_raise_windows: int
    alert_clear_windows: int
    trend_window_s: float
    score_retention_s: float


# -- users, sessions, audit -----------------------------------------------------------------------------

Username = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]
Password = Annotated[str, Field(min_length=8, max_length=256)]


class UserPublic(BaseModel):
    """A user, without secrets."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    role: Role
    disabled: bool
    has_password: bool
    has_token: bool
    created_at_s: float
    created_by: str | None

    @classmethod
    def of(cls, user: User) -> UserPublic:
        return cls(id=user.id, username=user.username, role=user.role,  # type: ignore[arg-type]
                   disabled=user.disabled, has_password=user.password_hash is not None,
                   has_token=user.token_hash is not None, created_at_s=user.created_at_s, created_by=user.created_by)


class UserCreate(BaseModel):
    """A new user: a password to sign in on the page, and/or an API token (returned once)."""

    username: Username
    role: Role
    password: Password | None = None
    with_token: bool = False


class UserUpdate(BaseModel):
    """Changes to a user; disabling, demoting or a new password ends their sessions."""

    role: Role | None = None
    disabled: bool | None = None
    password: Password | None = None


class UserCreated(BaseModel):
    """The created user, and its API token when one was asked for (shown only this once)."""

    user: UserPublic
    token: str | None = None


class TokenPublic(BaseModel):
    """A new API token, shown only this once."""

    user: UserPublic
    token: str


class LoginRequest(BaseModel):
    """Username and password."""

    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class SessionPublic(BaseModel):
    """A sign-in: send ``Authorization: Bearer <token>`` until ``expires_at_s``."""

    token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_at_s: float
    user: UserPublic


class MePublic(BaseModel):
    """Who the caller is (``null`` fields when anonymous) and what the server allows anonymously."""

    username: str | None
    role: Role | None
    via: Literal["token", "session"] | None
    reads_need_token: bool


class AuditPublic(BaseModel):
    """One audit entry."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at_s: float
    actor: str
    actor_role: str | None
    action: str
    target: str | None
    outcome: str
    detail: dict[str, Any]
    remote: str | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditPublic:
        return cls.model_validate(entry)


class AuditPage(BaseModel):
    """Audit entries newest first; pass ``next_before_id`` as ``before_id`` for older ones."""

    items: list[AuditPublic]
    next_before_id: int | None


# -- operations ------------------------------------------------------------------------------------------


class Unavailable(BaseModel):
    """A figure that does not exist yet, and why."""

    available: Literal[False] = False
    reason: str


class LatencyPublic(BaseModel):
    """End-to-end latency at the api (received_at - window_end) of the last ``n`` stored windows, in ms."""

    n: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    #: Cumulative histogram since start: upper bound (ms) -> count, as in ``/metrics``.
    histogram: dict[str, int]


class ServedModelPublic(BaseModel):
    """A model seen in score provenance (``name@version``)."""

    model: str
    name: str
    version: str | None
    windows: int
    beds: int
    last_seen_s: float


class DeadLetterPublic(BaseModel):
    """One dead letter, without its payload."""

    reason: str
    detail: str | None
    topic: str | None
    partition: int | None
    offset: int | None
    payload_bytes: int | None
    received_at_s: float | None


class DeadLettersPublic(BaseModel):
    """Dead letters read from ``<prefix>.deadletter`` since the topic's start: counts by reason, the last few."""

    state: ConsumerState
    topic: str | None
    total: int
    by_reason: dict[str, int]
    recent: list[DeadLetterPublic]
    last_error: str | None = None


class PlanPublic(BaseModel):
    """One ensemble selection a worker put in force, and why (a row of ``ensemble_plans``).

    ``id`` orders plans as the api stored them; ``reason_kind`` is the reason's first word (``start`` for a
    worker's first plan). Latencies are the worker's end-to-end milliseconds (acquisition to score published);
    ``measured_p99_ms`` is what the worker measured over the interval before this plan.
    """

    model_config = ConfigDict(from_attributes=True)

    id: int
    worker_id: str
    plan_id: int
    at_s: float
    reason: str
    reason_kind: str
    members: list[str]
    previous: list[str]
    budget_ms: float
    predicted_p50_ms: float
    predicted_p99_ms: float
    objective: float
    beds: int
    hop_s: float
    windows_per_s: float
    measured_p99_ms: float | None
    slowdown: float
    received_at_s: float


class PlanPage(BaseModel):
    """Plans newest first; pass ``next_before`` as ``before`` for older ones."""

    items: list[PlanPublic]
    next_before: int | None


class PlanMonitorPublic(BaseModel):
    """The reader of ``<prefix>.plans``: its state and what it did with the records since the api started.

    ``duplicates`` were stored already (the topic is read from its start at every start-up); ``conflicts`` are
    duplicates of a ``(worker_id, plan_id)`` with a different content (a worker that reused its id).
    """

    state: ConsumerState
    topic: str | None
    received: int
    stored: int
    duplicates: int
    conflicts: int
    undecodable: int
    rejected: int
    last_error: str | None = None


class WorkerSelectionPublic(BaseModel):
    """The ensemble one worker has in force: its latest plan."""

    worker_id: str
    plan_id: int
    members: list[str]
    objective: float
    since_s: float
    reason: str
    beds: int
    windows_per_s: float


class SelectionPublic(BaseModel):
    """The ensemble each worker has in force, most recently planned first."""

    available: Literal[True] = True
    workers: list[WorkerSelectionPublic]


class BudgetPublic(BaseModel):
    """The latency budget (ms, end to end) of the plans in force: the tightest, and each worker's."""

    available: Literal[True] = True
    budget_ms: float
    by_worker: dict[str, float]


class WorkerLatencyPublic(BaseModel):
    """One worker's plan in force: budget, predicted latency, and the p99 the worker measured before it."""

    worker_id: str
    plan_id: int
    budget_ms: float
    predicted_p50_ms: float
    predicted_p99_ms: float
    measured_p99_ms: float | None
    slowdown: float


class LatencyComparisonPublic(BaseModel):
    """Predicted latency of the plans in force next to what is measured, all end to end in ms.

    ``predicted_*`` are the slowest worker's, ``budget_ms`` the tightest. ``measured_p99_ms`` is the api's
    (received at the api - window end, the last windows under ``latency``), so it also holds the Kafka hop to
    the api; ``worker_measured_p99_ms`` comes from the scores' ``extra.measured_ms`` (acquisition to publish).
    """

    available: Literal[True] = True
    budget_ms: float
    predicted_p50_ms: float
    predicted_p99_ms: float
    measured_p50_ms: float | None
    measured_p99_ms: float | None
    worker_measured_p99_ms: float | None
    worker_measured_windows: int
    #: Whether the measured p99 at the api is within the budget (``None`` before any window).
    within_budget: bool | None
    workers: list[WorkerLatencyPublic]


class ReplansPublic(BaseModel):
    """The most recent plans (a worker's first one has reason ``start``), newest first."""

    available: Literal[True] = True
    #: Plans stored, and those among them that changed a running worker's selection (not ``start``).
    total: int
    changes: int
    items: list[PlanPublic]


class EnsembleStatus(BaseModel):
    """The ensemble now: the selectors' plans in force and re-plans, and what the api measures of the stream.

    ``selection``, ``budget_ms``, ``predicted_vs_measured_latency`` and ``replans`` are ``Unavailable`` (with
    the reason) until a worker's plan has been read. ``selection_changes`` counts stored plans that changed a
    running worker's selection; ``provenance_changes`` counts the times a bed's members changed between two
    full (not partial) scores, i.e. when the beds actually moved to a new selection.
    """

    served_models: list[ServedModelPublic]
    throughput_windows_per_s: float
    throughput_window_s: float
    windows_scored: int
    windows_unscorable: int
    windows_partial: int
    windows_lost: int
    selection_changes: int
    provenance_changes: int
    latency: LatencyPublic
    dead_letters: DeadLettersPublic
    plans: PlanMonitorPublic
    selection: SelectionPublic | Unavailable
    budget_ms: BudgetPublic | Unavailable
    predicted_vs_measured_latency: LatencyComparisonPublic | Unavailable
    replans: ReplansPublic | Unavailable


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


class AlertMessage(BaseModel):
    """WebSocket message when an alert is raised, acknowledged or cleared."""

    type: Literal["alert"] = "alert"
    alert: AlertPublic
    event: AlertEventPublic
    sent_at_s: float


class SnapshotMessage(BaseModel):
    """First WebSocket message: every bed with its latest stored score, and the alerts needing attention."""

    type: Literal["snapshot"] = "snapshot"
    beds: list[BedPublic]
    alerts: list[AlertPublic] = Field(default_factory=list)
    stale_after_s: float = 10.0
    sent_at_s: float
