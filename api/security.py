"""Hashing of tokens and passwords, roles, and the principal type (no FastAPI, no database)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["viewer", "clinician", "data_scientist", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN = 2**14, 8, 1, 32
#: Compared against when the user does not exist, so that a failed login takes as long either way.
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: tokens are random, so a fast hash is enough and allows indexed look-ups."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    """A salted scrypt hash, self-describing (``scrypt$n$r$p$salt$hash``)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                            dklen=_SCRYPT_LEN)
    return "$".join(["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; a missing or malformed hash never matches (in constant-ish time)."""
    try:
        kind, n, r, p, salt_b64, digest_b64 = (stored or _DUMMY_HASH).split("$")
        if kind != "scrypt":
            return False
        digest = base64.b64decode(digest_b64)
        candidate = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt_b64), n=int(n), r=int(r),
                                   p=int(p), dklen=len(digest))
    except (ValueError, TypeError):
        return False
    return stored is not None and hmac.compare_digest(candidate, digest)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user of the ``users`` table (``via`` says which kind of token they showed)."""

    user_id: int
    username: str
    role: Role
    via: Literal["token", "session"]

    def has(self, *roles: Role) -> bool:
        """Whether this principal may act as one of ``roles`` (admin always may; everyone is a viewer)."""
        return self.role == "admin" or self.role in roles or "viewer" in roles
