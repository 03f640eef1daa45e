"""Sign in and out, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from api.auth import OptionalUserDep, UserDep, bearer_token
from api.deps import ConfigDep, RemoteDep, get_services
from api.schemas import LoginRequest, MePublic, SessionPublic, UserPublic
from api.users import Actor

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/login", responses={401: {"description": "wrong username or password"}})
async def login(request: Request, body: LoginRequest, remote: RemoteDep) -> SessionPublic:
    """A session token for a username and password (audited, refused or not)."""
    users = get_services(request).users
    session = await run_in_threadpool(users.login, body.username, body.password, remote)
    request.scope.setdefault("state", {})["audited"] = True
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="wrong username or password",
                            headers={"WWW-Authenticate": "Bearer"})
    return SessionPublic(token=session.token, expires_at_s=session.expires_at_s, user=UserPublic.of(session.user))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses={401: {"description": "no token"}})
async def logout(request: Request, user: UserDep, remote: RemoteDep) -> None:
    """End the current session (an API token stays valid: rotate it instead)."""
    token = bearer_token(request)
    assert token is not None
    await run_in_threadpool(get_services(request).users.logout, token, Actor.of(user, remote))
    request.scope.setdefault("state", {})["audited"] = True


@router.get("/me")
def me(user: OptionalUserDep, config: ConfigDep) -> MePublic:
    """The caller's name and role (all ``null`` when anonymous)."""
    return MePublic(username=user.username if user else None, role=user.role if user else None,
                    via=user.via if user else None, reads_need_token=config.reads_need_token)
