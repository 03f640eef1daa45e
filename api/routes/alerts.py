"""Alerts: list, read with events, acknowledge (clinicians); acknowledgements are audited and broadcast."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from starlette.concurrency import run_in_threadpool

from api.alerts import MAX_ALERTS_LIMIT, AlertNotFound, AlreadyAcknowledged
from api.auth import ClinicianDep, require_read
from api.consumer import alert_message
from api.deps import AlertsDep, HubDep, MetricsDep, RemoteDep
from api.schemas import AcknowledgeRequest, AlertDetail, AlertPage, AlertPublic
from ingest.schemas import BED_ID_RE

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

AlertId = Annotated[int, Path(ge=1, le=2**62)]
Seconds = Annotated[float | None, Query(allow_inf_nan=False, ge=0, le=1e11)]


@router.get("", dependencies=[Depends(require_read)])
def list_alerts(
    alerts: AlertsDep,
    state: Annotated[Literal["active", "cleared"] | None, Query()] = None,
    acknowledged: bool | None = None,
    bed_id: Annotated[str | None, Query(pattern=BED_ID_RE.pattern)] = None,
    since_s: Seconds = None,
    until_s: Seconds = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ALERTS_LIMIT)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> AlertPage:
    """Alerts newest first, filtered by state, acknowledgement, bed and raise time (server clock)."""
    rows = alerts.list(state=state, acknowledged=acknowledged, bed_id=bed_id, since_s=since_s, until_s=until_s,
                       limit=limit, before_id=before_id)
    return AlertPage(items=[AlertPublic.model_validate(a) for a in rows],
                     next_before_id=rows[-1].id if len(rows) == limit else None)


@router.get("/{alert_id}", dependencies=[Depends(require_read)], responses={404: {"description": "unknown alert"}})
def get_alert(alerts: AlertsDep, alert_id: AlertId) -> AlertDetail:
    """One alert with its events."""
    try:
        return AlertDetail.of(*alerts.get(alert_id))
    except AlertNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


@router.post(
    "/{alert_id}/acknowledge",
    responses={401: {"description": "no token"}, 403: {"description": "not a clinician"},
               404: {"description": "unknown alert"}, 409: {"description": "already acknowledged"}},
)
async def acknowledge_alert(
    request: Request, alerts: AlertsDep, hub: HubDep, metrics: MetricsDep, user: ClinicianDep, remote: RemoteDep,
    alert_id: AlertId, body: AcknowledgeRequest | None = None,
) -> AlertDetail:
    """Acknowledge an alert (clinician or admin); stored with who and when, audited, pushed to every page."""
    try:
        change = await run_in_threadpool(alerts.acknowledge, alert_id, user.username, user.role,
                                         body.note if body else None, remote)
    except AlertNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except AlreadyAcknowledged as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    request.scope.setdefault("state", {})["audited"] = True
    metrics.alert_events.labels("acknowledged").inc()
    hub.publish(alert_message(change, time.time()))
    return AlertDetail.of(*await run_in_threadpool(alerts.get, alert_id))
