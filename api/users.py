"""Users, their API tokens and sign-in sessions; every change is audited in the same transaction."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.audit import SYSTEM_ACTOR, audit_entry
from api.errors import ApiError
from api.security import Principal, Role, hash_password, hash_token, new_token, verify_password
from api.tables import User, UserSession

BOOTSTRAP_ADMIN = "admin"


class UserError(ApiError):
    """A user operation was refused."""


class UsernameTaken(UserError):
    """Another user has this name."""


class UserNotFound(UserError):
    """No user with this id."""


class LastAdmin(UserError):
    """The change would leave no enabled admin."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, for the audit log."""

    username: str
    role: str | None = None
    remote: str | None = None

    @classmethod
    def of(cls, principal: Principal, remote: str | None = None) -> Actor:
        return cls(principal.username, principal.role, remote)


SYSTEM = Actor(SYSTEM_ACTOR)


@dataclass(frozen=True, slots=True)
class NewSession:
    """A sign-in: the bearer token (shown once) and when it expires."""

    token: str
    expires_at_s: float
    user: User


class UserStore:
    """Blocking reads and writes of users and sessions (call from a thread in async code)."""

    def __init__(self, engine: Engine, session_ttl_s: float = 12 * 3600.0) -> None:
        self.engine = engine
        self.session_ttl_s = session_ttl_s

    # -- authentication ----------------------------------------------------------------------------------

    def principal_for_token(self, token: str, now_s: float | None = None) -> Principal | None:
        """The enabled user holding ``token`` as API token or unexpired session, else ``None``."""
        digest = hash_token(token)
        now = time.time() if now_s is None else now_s
        with Session(self.engine) as session:
            user = session.scalar(select(User).where(User.token_hash == digest, User.disabled.is_(False)))
            if user is not None:
                return Principal(user.id, user.username, user.role, "token")  # type: ignore[arg-type]
            row = session.execute(
                select(User).join(UserSession, UserSession.user_id == User.id)
                .where(UserSession.token_hash == digest, UserSession.expires_at_s > now, User.disabled.is_(False))
            ).scalar_one_or_none()
            if row is None:
                return None
            return Principal(row.id, row.username, row.role, "session")  # type: ignore[arg-type]

    def login(self, username: str, password: str, remote: str | None = None) -> NewSession | None:
        """A new session for the right password (audited either way); ``None`` when refused."""
        now = time.time()
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            user = session.scalar(select(User).where(User.username == username))
            ok = verify_password(password, user.password_hash if user is not None else None)
            if user is None or not ok or user.disabled:
                session.add(audit_entry(username[:64] or "?", "auth.login", outcome="refused", remote=remote,
                                        detail={"reason": "disabled" if ok and user is not None
                                                else "bad credentials"}))
                return None
            token = new_token()
            expires = now + self.session_ttl_s
            session.add(UserSession(token_hash=hash_token(token), user_id=user.id, created_at_s=now,
                                    expires_at_s=expires))
            session.add(audit_entry(user.username, "auth.login", role=user.role, remote=remote,
                                    detail={"expires_at_s": expires}))
            return NewSession(token, expires, user)

    def logout(self, token: str, actor: Actor) -> bool:
        """End the session of ``token`` (audited); ``False`` when it was not a session."""
        with Session(self.engine) as session, session.begin():
            gone = session.execute(delete(UserSession).where(UserSession.token_hash == hash_token(token)))
            ended = bool(getattr(gone, "rowcount", 0))
            session.add(audit_entry(actor.username, "auth.logout", role=actor.role, remote=actor.remote,
                                    outcome="ok" if ended else "no-session"))
            return ended

    def purge_sessions(self, now_s: float | None = None) -> int:
        """Delete expired sessions; returns how many."""
        now = time.time() if now_s is None else now_s
        with Session(self.engine) as session, session.begin():
            result = session.execute(delete(UserSession).where(UserSession.expires_at_s <= now))
            return int(getattr(result, "rowcount", 0) or 0)

    # -- management ---------------------------------------------------------------------------------------

    def bootstrap_admin(self, token: str) -> User:
        """Make sure the user ``admin`` exists as an enabled admin holding ``token`` (rotated if it changed)."""
        digest = hash_token(token)
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            user = session.scalar(select(User).where(User.username == BOOTSTRAP_ADMIN))
            if user is None:
                user = User(username=BOOTSTRAP_ADMIN, role="admin", token_hash=digest, disabled=False,
                            created_at_s=time.time(), created_by=SYSTEM_ACTOR)
                session.add(user)
                session.add(audit_entry(SYSTEM_ACTOR, "user.bootstrap-admin", target=f"user:{BOOTSTRAP_ADMIN}"))
            elif user.token_hash != digest or user.role != "admin" or user.disabled:
                user.token_hash, user.role, user.disabled = digest, "admin", False
                session.add(audit_entry(SYSTEM_ACTOR, "user.bootstrap-admin", target=f"user:{BOOTSTRAP_ADMIN}",
                                        detail={"rotated": True}))
            return user

    def list(self) -> Sequence[User]:
        """Every user, by name."""
        with Session(self.engine) as session:
            return list(session.scalars(select(User).order_by(User.username)))

    def get(self, user_id: int) -> User:
        """One user; raises ``UserNotFound``."""
        with Session(self.engine) as session:
            user = session.get(User, user_id)
            if user is None:
                raise UserNotFound(f"no user {user_id}")
            return user

    def create(self, username: str, role: Role, actor: Actor, password: str | None = None,
               with_token: bool = False) -> tuple[User, str | None]:
        """A new user (with a password and/or an API token, shown once); raises ``UsernameTaken``."""
        token = new_token() if with_token else None
        user = User(username=username, role=role, password_hash=hash_password(password) if password else None,
                    token_hash=hash_token(token) if token else None, disabled=False, created_at_s=time.time(),
                    created_by=actor.username)
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                session.add(user)
                session.flush()
                session.add(audit_entry(actor.username, "user.create", role=actor.role, remote=actor.remote,
                                        target=f"user:{username}",
                                        detail={"role": role, "password": password is not None,
                                                "token": with_token}))
        except IntegrityError as exc:
            raise UsernameTaken(f"user {username!r} exists already") from exc
        return user, token

    def update(self, user_id: int, actor: Actor, role: Role | None = None, disabled: bool | None = None,
               password: str | None = None) -> User:
        """Change a user's role, state or password; disabling or demoting ends their sessions."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            user = session.get(User, user_id, with_for_update=True)
            if user is None:
                raise UserNotFound(f"no user {user_id}")
            changes: dict[str, object] = {}
            if role is not None and role != user.role:
                changes["role"] = [user.role, role]
                user.role = role
            if disabled is not None and disabled != user.disabled:
                changes["disabled"] = disabled
                user.disabled = disabled
            if password is not None:
                changes["password_changed"] = True
                user.password_hash = hash_password(password)
            if user.role != "admin" or user.disabled:
                others = session.scalars(select(User.id).where(User.role == "admin", User.disabled.is_(False),
                                                               User.id != user.id)).first()
                if others is None and ("role" in changes or "disabled" in changes):
                    raise LastAdmin("that would leave no enabled admin")
            if changes.keys() & {"role", "disabled", "password"}:
                session.execute(delete(UserSession).where(UserSession.user_id == user.id))
            session.add(audit_entry(actor.username, "user.update", role=actor.role, remote=actor.remote,
                                    target=f"user:{user.username}", detail=changes))
            return user

    def rotate_token(self, user_id: int, actor: Actor) -> tuple[User, str]:
        """Give a user a new API token (the old one stops working); returns it once."""
        token = new_token()
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            user = session.get(User, user_id, with_for_update=True)
            if user is None:
                raise UserNotFound(f"no user {user_id}")
            user.token_hash = hash_token(token)
            session.add(audit_entry(actor.username, "user.rotate-token", role=actor.role, remote=actor.remote,
                                    target=f"user:{user.username}"))
            return user, token
