"""Security of the api as a whole: every write of the OpenAPI schema refuses anonymous and read-only callers,
every response carries the security headers, CORS is closed unless configured, and secrets never reach the logs.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import ApiConfig
from api.config import STATIC_DIR
from api.errors import ConfigError

from .conftest import ADMIN, ADMIN_TOKEN, app_config

ClientFactory = Callable[[ApiConfig], TestClient]
Login = Callable[..., dict[str, str]]

#: Writes that are open by design: signing in (it refuses wrong credentials with 401).
OPEN_WRITES = {("POST", "/api/auth/login")}
#: Writes any signed-in user may make about their own session.
OWN_SESSION = {("POST", "/api/auth/logout")}
READ_METHODS = {"get", "head", "options", "trace"}
ORIGIN = "https://ward-display.example"


def _sample(schema: dict[str, Any]) -> str:
    """A value that satisfies a path parameter's schema, so that only authorisation can refuse the call."""
    if schema.get("type") == "integer":
        return str(max(1, int(schema.get("minimum", 1))))
    value = "a1"
    pattern = schema.get("pattern")
    assert pattern is None or re.search(pattern, value), f"pick a sample for {schema}"
    return value


def _writes(client: TestClient) -> Iterator[tuple[str, str, str]]:
    """(method, concrete URL, path template) of every state-changing operation in the OpenAPI schema."""
    schema = client.app.openapi()  # type: ignore[attr-defined]
    for template, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method in READ_METHODS:
                continue
            url = template
            for param in operation.get("parameters", []):
                if param["in"] == "path":
                    url = url.replace("{" + param["name"] + "}", _sample(param["schema"]))
            assert "{" not in url, template
            yield method.upper(), url, template


def test_the_schema_lists_the_known_writes(client: TestClient) -> None:
    # Guards the enumeration below: if the schema stopped listing writes, the other tests would pass vacuously.
    writes = {(m, t) for m, _, t in _writes(client)}
    assert {("POST", "/api/alerts/{alert_id}/acknowledge"), ("POST", "/api/users"),
            ("PATCH", "/api/users/{user_id}"), ("POST", "/api/models"),
            ("POST", "/api/models/{name}/{version}/promote"), ("POST", "/api/models/{name}/{version}/retire"),
            } | OPEN_WRITES | OWN_SESSION <= writes


@pytest.mark.parametrize("env", ["dev", "production"])
def test_every_write_refuses_an_anonymous_caller(client_factory: ClientFactory, sqlite_url: str, env: str) -> None:
    client = client_factory(app_config(sqlite_url, env=env))
    for method, url, template in _writes(client):
        if (method, template) in OPEN_WRITES:
            response = client.request(method, url, json={"username": "admin", "password": "not-the-password"})
        else:
            response = client.request(method, url, json={})
        assert response.status_code == 401, (env, method, url, response.status_code, response.text)
        assert response.headers["www-authenticate"] == "Bearer", (method, url)
    # The probes stay open in production: docker-compose.yml's health check of the api calls /readyz.
    assert client.get("/healthz").status_code == client.get("/readyz").status_code == 200


def test_every_write_refuses_unknown_tokens_and_viewers(client: TestClient, login: Login) -> None:
    viewer = login(client, "viewer")
    for method, url, template in _writes(client):
        if (method, template) in OPEN_WRITES:
            continue
        forged = client.request(method, url, json={}, headers={"Authorization": f"Bearer {secrets.token_urlsafe(32)}"})
        assert forged.status_code == 401, (method, url, forged.text)
        if (method, template) not in OWN_SESSION:
            read_only = client.request(method, url, json={}, headers=viewer)
            assert read_only.status_code == 403, (method, url, read_only.status_code, read_only.text)


# -- headers -------------------------------------------------------------------------------------------


def _assert_security_headers(response: Any, *, csp: bool = True) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff", response.url
    assert headers["x-frame-options"] == "DENY", response.url
    assert headers["referrer-policy"] == "no-referrer", response.url
    if csp:
        policy = headers["content-security-policy"]
        directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in policy.split(";") if d.strip())
        assert directives["frame-ancestors"] == "'none'", policy
        assert directives["script-src"] == "'self'", policy
        assert directives["default-src"] == "'self'", policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, policy


def test_every_kind_of_response_carries_the_security_headers(client: TestClient) -> None:
    responses = [
        client.get("/"), client.get("/beds/bed-1"), client.get("/admin"), client.get("/healthz"), client.get("/readyz"),
        client.get("/api/beds"), client.get("/static/app.js"), client.get("/openapi.json"),
        client.get("/no/such/page"),                       # 404
        client.post("/api/users", json={}),                 # 401
        client.get("/api/scores", params={"limit": -1}),    # 422
        client.delete("/api/beds"),                         # 405
    ]
    assert {r.status_code for r in responses} >= {200, 401, 404, 405, 422}
    for response in responses:
        _assert_security_headers(response)
    # Swagger UI needs its inline bootstrap script: no CSP there, the other headers still.
    for path in ("/docs", "/docs-static/swagger-ui.css"):
        response = client.get(path)
        assert response.status_code == 200, path
        _assert_security_headers(response, csp=False)


def test_the_dashboard_needs_nothing_the_csp_forbids(client: TestClient) -> None:
    """script-src/style-src 'self': no inline script, event-handler attribute or style attribute; no eval."""
    pages = [client.get(p).text for p in ("/", "/beds/bed-1", "/alerts", "/models", "/ensemble", "/admin")]
    pages += [p.read_text() for p in STATIC_DIR.rglob("*.html")]
    for page in pages:
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page, re.I), "inline <script>"
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", page, re.I), "inline event handler"
        assert not re.search(r"<[^>]+\sstyle\s*=", page, re.I), "style attribute"
        assert not re.search(r"<style\b", page, re.I), "inline <style>"
    scripts = list(STATIC_DIR.rglob("*.js"))
    assert scripts
    for script in scripts:
        code = script.read_text()
        assert not re.search(r"\beval\s*\(|new\s+Function\s*\(|setAttribute\(\s*[\"']style|\sstyle=|\bon[a-z]+=\"",
                             code), script.name


# -- CORS ----------------------------------------------------------------------------------------------


def _preflight(client: TestClient, origin: str) -> Any:
    return client.options("/api/alerts/1/acknowledge", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})


def test_cors_is_closed_by_default(client: TestClient) -> None:
    assert "access-control-allow-origin" not in client.get("/api/beds", headers={"Origin": ORIGIN}).headers
    preflight = _preflight(client, ORIGIN)
    assert preflight.status_code >= 400 and "access-control-allow-origin" not in preflight.headers


def test_cors_allows_exactly_the_configured_origins(client_factory: ClientFactory, sqlite_url: str) -> None:
    client = client_factory(app_config(sqlite_url, cors_origins=(ORIGIN, "http://localhost:3000")))
    allowed = _preflight(client, ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers  # bearer tokens only, never cookies
    _assert_security_headers(allowed)
    assert client.get("/api/beds", headers={"Origin": ORIGIN}).headers["access-control-allow-origin"] == ORIGIN
    other = "https://attacker.example"
    refused = _preflight(client, other)
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    assert "access-control-allow-origin" not in client.get("/api/beds", headers={"Origin": other}).headers
    # CORS decides what a browser may read; it never replaces authentication.
    assert client.post("/api/users", json={}, headers={"Origin": ORIGIN}).status_code == 401


@pytest.mark.parametrize("origin", ["*", "https://ward.example/", "https://ward.example/app", "ward.example",
                                    "ftp://ward.example", "https://*.example", "https://ward.example\n"])
def test_config_refuses_wildcard_and_malformed_origins(origin: str) -> None:
    with pytest.raises(ConfigError):
        ApiConfig(cors_origins=(origin,))


def test_config_accepts_plain_origins() -> None:
    origins = ("https://ward.example", "http://localhost:3000", "https://[::1]:8443")
    assert ApiConfig(cors_origins=origins).cors_origins == origins


# -- secrets in logs -----------------------------------------------------------------------------------


def test_no_secret_reaches_the_logs_or_the_audit_trail(
    client_factory: ClientFactory, sqlite_url: str, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    config = app_config(sqlite_url, env="production")
    assert ADMIN_TOKEN not in repr(config) and ADMIN_TOKEN not in str(config)
    client = client_factory(config)
    password = f"pw-{secrets.token_urlsafe(16)}"
    created = client.post("/api/users", headers=ADMIN, json={"username": "nurse", "role": "clinician",
                                                             "password": password, "with_token": True})
    assert created.status_code == 201, created.text
    api_token = created.json()["token"]
    signed_in = client.post("/api/auth/login", json={"username": "nurse", "password": password})
    assert signed_in.status_code == 200
    session = signed_in.json()["token"]
    assert client.post("/api/auth/login", json={"username": "nurse", "password": password + "x"}).status_code == 401
    assert client.get("/api/beds", headers={"Authorization": f"Bearer {session}"}).status_code == 200
    assert client.get("/api/beds", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}).status_code == 401
    with client.websocket_connect(f"/ws/scores?token={api_token}") as ws:
        assert "beds" in ws.receive_json()
    rotated = client.post(f"/api/users/{created.json()['user']['id']}/token", headers=ADMIN)
    assert rotated.status_code == 200
    audit = client.get("/api/audit", headers=ADMIN, params={"limit": 100}).json()["items"]
    assert client.post("/api/auth/logout", headers={"Authorization": f"Bearer {session}"}).status_code == 204

    out, err = capfd.readouterr()
    logged = "\n".join([caplog.text, out, err])
    assert caplog.records, "nothing was logged: the check below would be vacuous"
    trail = json.dumps(audit)
    assert audit
    for name, secret in {"admin token": ADMIN_TOKEN, "password": password, "api token": api_token,
                         "session token": session, "rotated token": rotated.json()["token"]}.items():
        assert secret not in logged, f"the {name} is in the log output"
        assert secret not in trail, f"the {name} is in the audit trail"
