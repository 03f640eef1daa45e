"""The append-only audit log: who did what, when and with what outcome.

Domain writes (acknowledging an alert, managing users, signing in) add their entry in the same transaction as
the change itself, so neither exists without the other. ``AuditMiddleware`` adds one for every other
state-changing request (the model registry's routes, and every refused write), with the HTTP status as outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.asgi import StatusRecorder
from api.tables import AuditEntry

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"
ANONYMOUS_ACTOR = "anonymous"
#: The most rows one call of ``AuditLog.list`` returns.
MAX_AUDIT_LIMIT = 1000
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def audit_entry(actor: str, action: str, *, role: str | None = None, target: str | None = None,
                outcome: str = "ok", detail: dict[str, Any] | None = None, remote: str | None = None,
                at_s: float | None = None) -> AuditEntry:
    """A new audit row, to be added to the session that makes the change it records."""
    return AuditEntry(at_s=time.time() if at_s is None else at_s, actor=actor[:64], actor_role=role,
                      action=action[:128], target=target[:255] if target else None, outcome=outcome[:32],
                      detail=detail or {}, remote=remote[:64] if remote else None)


class AuditLog:
    """Appends and reads audit entries; there is deliberately no way to change or delete one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, entry: AuditEntry) -> int:
        """Store one entry in its own transaction; returns its id."""
        with Session(self.engine) as session, session.begin():
            session.add(entry)
            session.flush()
            return entry.id

    def list(self, limit: int = 100, before_id: int | None = None, actor: str | None = None,
             action: str | None = None) -> Sequence[AuditEntry]:
        """Newest first; ``before_id`` pages back."""
        if not 1 <= limit <= MAX_AUDIT_LIMIT:
            raise ValueError(f"limit must be in [1, {MAX_AUDIT_LIMIT}], not {limit}")
        query = select(AuditEntry)
        if before_id is not None:
            query = query.where(AuditEntry.id < before_id)
        if actor is not None:
            query = query.where(AuditEntry.actor == actor)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        with Session(self.engine) as session:
            return list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)))


class AuditMiddleware:
    """Records every state-changing HTTP request that no route recorded itself (pure ASGI, no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        recorder = StatusRecorder(send)
        try:
            await self.app(scope, receive, recorder)
        finally:
            status_code = recorder.status_code
            if not state.get("audited"):
                await self._record(scope, state, status_code)

    async def _record(self, scope: Scope, state: dict[str, Any], status_code: int) -> None:
        audit: AuditLog | None = state.get("audit_log") or _audit_of(scope)
        if audit is None:
            return
        principal = state.get("principal")
        route = scope.get("route")
        client = scope.get("client")
        entry = audit_entry(
            principal.username if principal is not None else ANONYMOUS_ACTOR,
            f"http {scope['method']} {getattr(route, 'path', scope['path'])}",
            role=principal.role if principal is not None else None,
            target=scope["path"],
            outcome=str(status_code),
            detail={"query": scope.get("query_string", b"").decode("latin-1")[:500]},
            remote=client[0] if client else None,
        )
        try:
            await run_in_threadpool(audit.append, entry)
        except Exception:  # noqa: BLE001 - a failed audit write is logged loudly, the response is already sent
            log.exception("could not write the audit entry for %s %s", scope["method"], scope["path"])


def _audit_of(scope: Scope) -> AuditLog | None:
    app = scope.get("app")
    services = getattr(getattr(app, "state", None), "services", None)
    return getattr(services, "audit", None)
