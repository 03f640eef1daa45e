"""The dashboard page, its configuration and the WebSocket feed."""

from __future__ import annotations

import asyncio
import contextlib
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from api.auth import bearer_token
from api.deps import ConfigDep, HubDep, StoreDep, get_services
from api.hub import Subscription
from api.routes.beds import beds_now
from api.schemas import SnapshotMessage, UiConfigPublic

router = APIRouter(tags=["live"])

#: Paths of the page's views; each serves the same single page, which routes on the client.
PAGE_PATHS = ("/", "/beds/{bed_id}", "/alerts", "/models", "/ensemble", "/admin")


def index(config: ConfigDep) -> FileResponse:
    """The dashboard (a single page; the views route on the client)."""
    return FileResponse(config.static_dir / "index.html", headers={"Cache-Control": "no-cache"})


for _path in PAGE_PATHS:
    router.add_api_route(_path, index, methods=["GET"], include_in_schema=False)


@router.get("/api/ui-config", tags=["live"])
def ui_config(config: ConfigDep) -> UiConfigPublic:
    """What the page needs: cadence, staleness, alert rules, and whether reads need a token."""
    return UiConfigPublic(
        env=config.env, hop_s=config.hop_s, stale_after_s=config.stale_after_s,
        reads_need_token=config.reads_need_token, alert_threshold=config.alert_threshold,
        alert_clear_threshold=config.alert_clear_threshold, alert_raise_windows=config.alert_raise_windows,
        alert_clear_windows=config.alert_clear_windows, trend_window_s=config.trend_window_s,
        score_retention_s=config.score_retention_s,
    )


@router.websocket("/ws/scores")
async def scores_ws(websocket: WebSocket, store: StoreDep, hub: HubDep, config: ConfigDep) -> None:
    """Send a snapshot of every bed (latest score, status, open alert), then each new score and alert event.

    Where reads need a token, pass it as ``?token=`` (browsers cannot set headers on a WebSocket).
    """
    services = get_services(websocket)
    if config.reads_need_token:
        token = bearer_token(websocket)
        principal = await run_in_threadpool(services.users.principal_for_token, token) if token else None
        if principal is None:
            await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason="sign in first")
            return
    await websocket.accept()
    # Subscribe before reading the snapshot so that a score arriving in between is queued, not lost.
    with hub.subscribe() as sub:
        watcher = asyncio.create_task(_close_on_disconnect(websocket, sub))
        try:
            beds = await run_in_threadpool(beds_now, store, services.alerts, config)
            snapshot = SnapshotMessage(beds=beds, alerts=[b.alert for b in beds if b.alert is not None],
                                       stale_after_s=config.stale_after_s, sent_at_s=time.time())
            await websocket.send_text(snapshot.model_dump_json())
            while (message := await sub.get()) is not None:
                await websocket.send_text(message)
        except WebSocketDisconnect:
            pass
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def _close_on_disconnect(websocket: WebSocket, sub: Subscription) -> None:
    """Read (and ignore) what the client sends; close the subscription when it goes away."""
    try:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    finally:
        sub.close()

