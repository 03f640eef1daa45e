"""The audit log: every write and acknowledgement with who, what and when; the database refuses changes to it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.db import make_engine
from ingest.schemas import ScoreRecord

from .conftest import ADMIN

Feed = Callable[[TestClient, list[ScoreRecord]], int]


def entries(client: TestClient) -> list[tuple[str, str | None, str, str | None, str]]:
    items = client.get("/api/audit", headers=ADMIN, params={"limit": 100}).json()["items"]
    return [(a["actor"], a["actor_role"], a["action"], a["target"], a["outcome"]) for a in reversed(items)]


def test_writes_and_acknowledgements_are_audited(
    client: TestClient, feed: Feed, make_score: Callable[..., ScoreRecord], login: Callable[..., dict[str, str]]
) -> None:
    feed(client, [make_score("bed-3", 10.0 + 5 * i, risk=0.9) for i in range(3)])
    alert = client.get("/api/alerts").json()["items"][0]["id"]
    nurse = login(client, "clinician", "nurse")
    assert client.post(f"/api/alerts/{alert}/acknowledge").status_code == 401
    assert client.post(f"/api/alerts/{alert}/acknowledge", headers=nurse, json={"note": "seen"}).status_code == 200
    assert client.post("/api/models/rr-af/1/promote").status_code in (401, 404)  # registry routes: audited too
    log = entries(client)
    assert log[0] == ("system", None, "user.bootstrap-admin", "user:admin", "ok")
    assert ("admin", "admin", "user.create", "user:nurse", "ok") in log
    assert ("anonymous", None, "http POST /api/alerts/{alert_id}/acknowledge", f"/api/alerts/{alert}/acknowledge",
            "401") in log
    assert ("nurse", "clinician", "alert.acknowledge", f"alert:{alert}", "ok") in log
    assert log[-1][2] == "http POST /api/models/{name}/{version}/promote"
    detail = client.get("/api/audit", headers=ADMIN, params={"action": "alert.acknowledge"}).json()["items"][0]
    assert detail["detail"] == {"bed_id": "bed-3", "note": "seen", "alert_state": "active"}
    assert detail["remote"] == "testclient" and detail["at_s"] > 0


def test_paging_back_through_the_log(client: TestClient) -> None:
    for i in range(5):
        client.post("/api/users", headers=ADMIN, json={"username": f"u{i}", "role": "viewer"})
    first = client.get("/api/audit", headers=ADMIN, params={"limit": 4}).json()
    second = client.get("/api/audit", headers=ADMIN, params={"limit": 4, "before_id": first["next_before_id"]}).json()
    ids = [a["id"] for a in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 6 and second["next_before_id"] is None


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"])
def test_the_database_refuses_to_change_the_audit_log(client: TestClient, database_url: str, statement: str) -> None:
    engine = make_engine(database_url)
    try:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.text(statement))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT actor FROM audit_log")).scalars().all() == ["system"]
    finally:
        engine.dispose()
