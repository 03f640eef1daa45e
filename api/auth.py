"""Authentication and roles: hashed tokens and passwords, the current principal, ``require_role`` dependencies.

Every request may carry ``Authorization: Bearer <token>``; the token is either a user's API token (stored as its
SHA-256) or a session token from ``POST /api/auth/login`` (stored as its SHA-256, with an expiry). The WebSocket
may pass it as ``?token=`` because browsers cannot set headers on one.

Roles: ``viewer`` reads; ``clinician`` also acknowledges alerts; ``data_scientist`` also registers models;
``admin`` may do everything, including promoting and retiring models and managing users.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, status
from starlette.requests import HTTPConnection

from api.deps import get_services
from api.security import ROLES, Principal, Role, hash_password, hash_token, new_token, verify_password

__all__ = [
    "ROLES",
    "AdminDep",
    "ClinicianDep",
    "OptionalUserDep",
    "Principal",
    "ReaderDep",
    "Role",
    "UserDep",
    "bearer_token",
    "current_principal",
    "hash_password",
    "hash_token",
    "new_token",
    "require_read",
    "require_role",
    "verify_password",
]


def bearer_token(conn: HTTPConnection) -> str | None:
    """The bearer token of a request, or of a WebSocket's ``token`` query parameter."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    if conn.scope.get("type") == "websocket":
        return conn.query_params.get("token") or None
    return None


def _remember(conn: HTTPConnection, principal: Principal | None) -> Principal | None:
    # The audit middleware reads it after the response to say who made a write.
    if principal is not None:
        conn.scope.setdefault("state", {})["principal"] = principal
    return principal


def current_principal(conn: HTTPConnection) -> Principal | None:
    """The principal of a valid token, ``None`` without a token; 401 for a token that is unknown or expired."""
    token = bearer_token(conn)
    if token is None:
        return None
    principal = get_services(conn).users.principal_for_token(token)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="invalid or expired token",
                            headers={"WWW-Authenticate": "Bearer"})
    return _remember(conn, principal)


def require_role(*roles: Role) -> Callable[[HTTPConnection], Principal]:
    """A dependency that returns the caller if it holds one of ``roles`` (admin always does): 401 / 403 otherwise.

    Use as ``Annotated[Principal, Depends(require_role("clinician"))]`` or in ``dependencies=[...]``.
    """
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        raise ValueError(f"require_role needs roles among {ROLES}, not {roles}")

    def dependency(conn: HTTPConnection) -> Principal:
        principal = current_principal(conn)
        if principal is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="sign in first: this needs a bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
        if not principal.has(*roles):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail=f"role {principal.role!r} may not do this (needs {' or '.join(roles)})")
        return principal

    dependency.__name__ = f"require_role_{'_'.join(roles)}"
    return dependency


def require_read(conn: HTTPConnection) -> Principal | None:
    """Reads: anyone when the api allows anonymous reads (dev), else any signed-in role."""
    principal = current_principal(conn)
    if principal is None and get_services(conn).config.reads_need_token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="sign in first: reads need a viewer token here",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


ReaderDep = Annotated[Principal | None, Depends(require_read)]
ClinicianDep = Annotated[Principal, Depends(require_role("clinician"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
UserDep = Annotated[Principal, Depends(require_role("viewer"))]
OptionalUserDep = Annotated[Principal | None, Depends(current_principal)]
