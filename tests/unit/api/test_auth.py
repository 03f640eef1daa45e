"""Tokens, passwords, sessions and the role checks, over HTTP on both databases; production refuses defaults."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.websockets import WebSocketDisconnect

from api import ApiConfig
from api.auth import require_role
from api.errors import ConfigError
from api.security import Principal, hash_password, hash_token, new_token, verify_password
from ingest.schemas import ScoreRecord

from .conftest import ADMIN, ADMIN_TOKEN, app_config

Login = Callable[..., dict[str, str]]
Feed = Callable[[TestClient, list[ScoreRecord]], int]


def test_passwords_are_salted_scrypt_and_tokens_sha256() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and stored != hash_password("correct horse")
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong horse", stored)
    assert not verify_password("x", None) and not verify_password("x", "md5$abc")
    token = new_token()
    assert len(token) >= 43 and hash_token(token) == hash_token(token) and len(hash_token(token)) == 64


def test_roles_nest_under_admin() -> None:
    viewer, clinician, admin = (Principal(1, n, r, "token") for n, r in
                                (("v", "viewer"), ("c", "clinician"), ("a", "admin")))
    assert viewer.has("viewer") and not viewer.has("clinician")
    assert clinician.has("clinician") and clinician.has("viewer") and not clinician.has("data_scientist")
    assert admin.has("clinician") and admin.has("data_scientist") and admin.has("admin")
    with pytest.raises(ValueError, match="roles"):
        require_role("nurse")  # type: ignore[arg-type]


@pytest.mark.parametrize("token", [None, "short", "   " * 20])
def test_production_refuses_to_start_without_a_real_admin_token(token: str | None) -> None:
    with pytest.raises(ConfigError, match="HOLMES_ADMIN_TOKEN"):
        ApiConfig(env="production", admin_token=SecretStr(token) if token is not None else None)


def test_production_needs_tokens_for_reads_dev_does_not() -> None:
    assert not ApiConfig().reads_need_token
    assert ApiConfig(env="production", admin_token=SecretStr("x" * 40)).reads_need_token
    assert not ApiConfig(env="production", admin_token=SecretStr("x" * 40), anonymous_read=True).reads_need_token


def alert_id(client: TestClient, feed: Feed, make_score: Callable[..., ScoreRecord]) -> int:
    """A new alert on a new bed."""
    bed = f"bed-{next(_beds)}"
    feed(client, [make_score(bed, 100.0 + 5 * i, risk=0.95) for i in range(3)])
    return int(client.get("/api/alerts", params={"bed_id": bed}).json()["items"][0]["id"])


_beds = itertools.count(100)


# (method, path template, body): every write of the api with the roles that may do it.
WRITES: list[tuple[str, str, Any, set[str]]] = [
    ("POST", "/api/alerts/{alert}/acknowledge", {}, {"clinician", "admin"}),
    ("POST", "/api/users", {"username": "new-{role}", "role": "viewer"}, {"admin"}),
    ("PATCH", "/api/users/{viewer_id}", {"disabled": False}, {"admin"}),
    ("POST", "/api/users/{viewer_id}/token", None, {"admin"}),
]


@pytest.mark.parametrize(("method", "path", "body", "allowed"), WRITES, ids=[w[1] for w in WRITES])
def test_writes_need_a_token_with_the_right_role(
    client: TestClient, login: Login, feed: Feed, make_score: Callable[..., ScoreRecord],
    method: str, path: str, body: Any, allowed: set[str],
) -> None:
    viewer_id = client.post("/api/users", headers=ADMIN, json={"username": "v0", "role": "viewer"}).json()["user"]["id"]
    for role in ("anonymous", "viewer", "clinician", "data_scientist", "admin"):
        target = path.format(alert=alert_id(client, feed, make_score) if "{alert}" in path else 0,
                             viewer_id=viewer_id)
        headers = {} if role == "anonymous" else ADMIN if role == "admin" else login(client, role)
        payload = {k: v.format(role=role) if isinstance(v, str) else v for k, v in body.items()} if body else None
        response = client.request(method, target, headers=headers, json=payload)
        expected = {200, 201} if role in allowed else {401} if role == "anonymous" else {403}
        assert response.status_code in expected, (role, response.status_code, response.text)
        if role == "anonymous":
            assert response.headers["www-authenticate"] == "Bearer"


def test_admin_reads_need_admin(client: TestClient, login: Login) -> None:
    for path in ("/api/users", "/api/audit"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=login(client, "clinician")).status_code == 403
        assert client.get(path, headers=ADMIN).status_code == 200


def test_unknown_token_is_401_even_for_reads(client: TestClient) -> None:
    assert client.get("/api/beds").status_code == 200  # dev: anonymous reads
    assert client.get("/api/beds", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_sign_in_session_sign_out(client: TestClient) -> None:
    client.post("/api/users", headers=ADMIN, json={"username": "ana", "role": "clinician", "password": "s3cret-pass"})
    assert client.post("/api/auth/login", json={"username": "ana", "password": "wrong-pass"}).status_code == 401
    assert client.post("/api/auth/login", json={"username": "nobody", "password": "x"}).status_code == 401
    session = client.post("/api/auth/login", json={"username": "ana", "password": "s3cret-pass"})
    assert session.status_code == 200
    body = session.json()
    assert body["token_type"] == "bearer" and body["expires_at_s"] > time.time() + 3600  # noqa: S105
    assert body["user"]["role"] == "clinician" and "scrypt" not in str(body["user"])
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/api/auth/me", headers=headers).json() == {
        "username": "ana", "role": "clinician", "via": "session", "reads_need_token": False}
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    assert client.get("/api/auth/me").json()["username"] is None


def test_disabling_a_user_ends_their_access_and_the_last_admin_stays(client: TestClient, login: Login) -> None:
    headers = login(client, "clinician", "bo")
    users = {u["username"]: u for u in client.get("/api/users", headers=ADMIN).json()}
    assert client.patch(f"/api/users/{users['bo']['id']}", headers=ADMIN, json={"disabled": True}).status_code == 200
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    refused = client.patch(f"/api/users/{users['admin']['id']}", headers=ADMIN, json={"role": "viewer"})
    assert refused.status_code == 409 and "no enabled admin" in refused.json()["detail"]
    rotated = client.post(f"/api/users/{users['bo']['id']}/token", headers=ADMIN).json()["token"]
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {rotated}"}).status_code == 401  # disabled
    assert client.post("/api/users", headers=ADMIN, json={"username": "bo", "role": "viewer"}).status_code == 409


def test_the_bootstrap_admin_follows_the_configured_token(
    client_factory: Callable[[ApiConfig], TestClient], sqlite_url: str
) -> None:
    client = client_factory(app_config(sqlite_url))
    assert client.get("/api/auth/me", headers=ADMIN).json()["role"] == "admin"
    client.__exit__(None, None, None)
    rotated = client_factory(app_config(sqlite_url, admin_token=SecretStr("r" * 40)))
    assert rotated.get("/api/auth/me", headers=ADMIN).status_code == 401
    assert rotated.get("/api/auth/me", headers={"Authorization": f"Bearer {'r' * 40}"}).json()["username"] == "admin"


def test_production_reads_and_websocket_need_a_token(
    client_factory: Callable[[ApiConfig], TestClient], database_url: str, login: Login
) -> None:
    client = client_factory(app_config(database_url, env="production"))
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    assert client.get("/api/ui-config").json()["reads_need_token"] is True
    for path in ("/api/beds", "/api/alerts", "/api/scores", "/api/ensemble", "/metrics"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=login(client, "viewer")).status_code == 200, path
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/ws/scores") as ws:
        ws.receive_json()
    assert closed.value.code == 1008
    with client.websocket_connect(f"/ws/scores?token={ADMIN_TOKEN}") as ws:
        assert ws.receive_json()["type"] == "snapshot"
