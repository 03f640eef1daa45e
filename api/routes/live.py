"""The live page and its WebSocket feed."""

from __future__ import annotations

import asyncio
import contextlib
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ConfigDep, HubDep, StoreDep
from api.hub import Subscription
from api.schemas import BedPublic, SnapshotMessage

router = APIRouter(tags=["live"])


@router.get("/", include_in_schema=False)
def index(config: ConfigDep) -> FileResponse:
    """The live page."""
    return FileResponse(config.static_dir / "index.html", headers={"Cache-Control": "no-cache"})


@router.websocket("/ws/scores")
async def scores_ws(websocket: WebSocket, store: StoreDep, hub: HubDep) -> None:
    """Send a snapshot of every bed's latest score, then each new score as it arrives."""
    await websocket.accept()
    # Subscribe before reading the snapshot so that a score arriving in between is queued, not lost.
    with hub.subscribe() as sub:
        watcher = asyncio.create_task(_close_on_disconnect(websocket, sub))
        try:
            beds = await run_in_threadpool(store.latest_per_bed)
            snapshot = SnapshotMessage(beds=[BedPublic.of(bed, score) for bed, score in beds], sent_at_s=time.time())
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
