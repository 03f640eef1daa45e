"""The audit log, read-only (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.audit import MAX_AUDIT_LIMIT
from api.auth import AdminDep
from api.deps import AuditDep
from api.schemas import AuditPage, AuditPublic

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("", responses={401: {"description": "no token"}, 403: {"description": "not an admin"}})
def list_audit(
    audit: AuditDep, admin: AdminDep,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_LIMIT)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=128)] = None,
) -> AuditPage:
    """Entries newest first; there is no route that changes or deletes one."""
    rows = audit.list(limit, before_id, actor, action)
    return AuditPage(items=[AuditPublic.of(r) for r in rows],
                     next_before_id=rows[-1].id if len(rows) == limit else None)
