"""User management (admin): create, list, change role/state/password, issue API tokens; all audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status
from starlette.concurrency import run_in_threadpool

from api.auth import AdminDep
from api.deps import RemoteDep, get_services
from api.schemas import TokenPublic, UserCreate, UserCreated, UserPublic, UserUpdate
from api.users import Actor, LastAdmin, UsernameTaken, UserNotFound

router = APIRouter(prefix="/api/users", tags=["users"])

UserId = Annotated[int, Path(ge=1, le=2**62)]
_ERRORS = {401: {"description": "no token"}, 403: {"description": "not an admin"}}


def _mark_audited(request: Request) -> None:
    request.scope.setdefault("state", {})["audited"] = True


@router.get("", responses=_ERRORS)
def list_users(request: Request, admin: AdminDep) -> list[UserPublic]:
    """Every user, by name."""
    return [UserPublic.of(u) for u in get_services(request).users.list()]


@router.post("", status_code=status.HTTP_201_CREATED, responses={**_ERRORS, 409: {"description": "name taken"}})
async def create_user(request: Request, body: UserCreate, admin: AdminDep, remote: RemoteDep) -> UserCreated:
    """Create a user with a password (to sign in on the page) and/or an API token (returned only now)."""
    users = get_services(request).users
    try:
        user, token = await run_in_threadpool(users.create, body.username, body.role, Actor.of(admin, remote),
                                              body.password, body.with_token)
    except UsernameTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    _mark_audited(request)
    return UserCreated(user=UserPublic.of(user), token=token)


@router.patch("/{user_id}", responses={**_ERRORS, 404: {"description": "unknown user"},
                                       409: {"description": "would leave no admin"}})
async def update_user(request: Request, user_id: UserId, body: UserUpdate, admin: AdminDep,
                      remote: RemoteDep) -> UserPublic:
    """Change role, disable/enable, or set a new password; the user's sessions end."""
    users = get_services(request).users
    try:
        user = await run_in_threadpool(users.update, user_id, Actor.of(admin, remote), body.role, body.disabled,
                                       body.password)
    except UserNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except LastAdmin as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    _mark_audited(request)
    return UserPublic.of(user)


@router.post("/{user_id}/token", responses={**_ERRORS, 404: {"description": "unknown user"}})
async def rotate_token(request: Request, user_id: UserId, admin: AdminDep, remote: RemoteDep) -> TokenPublic:
    """A new API token for a user (the previous one stops working); returned only now."""
    users = get_services(request).users
    try:
        user, token = await run_in_threadpool(users.rotate_token, user_id, Actor.of(admin, remote))
    except UserNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    _mark_audited(request)
    return TokenPublic(user=UserPublic.of(user), token=token)
