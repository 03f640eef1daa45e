"""REST of the model registry: upload through the gates, reads, promote and retire, on both databases."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import create_app
from models.registry.bundle import BundleLimits
from models.registry.gates import GateConfig
from models.registry.registration import RegistrationConfig
from models.serving import DEFAULT_ARTIFACT_DIR

from .conftest import ADMIN, app_config

RR_CARD = DEFAULT_ARTIFACT_DIR / "rr_af_v1.json"
RR_WEIGHTS = DEFAULT_ARTIFACT_DIR / "rr_af_v1.pt"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)

ClientFactory = Callable[..., TestClient]


@pytest.fixture
def models_client(database_url: str, tmp_path: Path, data_dir: Path) -> Iterator[ClientFactory]:
    """Starts apps with model uploads enabled (artifacts under ``tmp_path``) and stops them afterwards."""
    clients: list[TestClient] = []

    def make(limits: BundleLimits | None = None, uploads: bool = True, headers: dict[str, str] | None = ADMIN
             ) -> TestClient:
        registration = RegistrationConfig(
            artifact_root=tmp_path / "models", data_dir=data_dir, gates=GateConfig(batch_sizes=(1, 4)),
            limits=limits or BundleLimits(),
        )
        client = TestClient(create_app(app_config(database_url), registration if uploads else None))
        client.__enter__()
        client.headers.update(headers or {})
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


def bundle_zip(card_changes: dict[str, Any] | None = None, input_changes: dict[str, Any] | None = None) -> bytes:
    card = json.loads(RR_CARD.read_text())
    card.update(card_changes or {})
    card["input"].update(input_changes or {})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("card.json", json.dumps(card))
        archive.writestr("rr_af_v1.pt", RR_WEIGHTS.read_bytes())
        if card.get("predictions_file"):
            archive.writestr(card["predictions_file"], (DEFAULT_ARTIFACT_DIR / card["predictions_file"]).read_bytes())
    return buffer.getvalue()


def upload(client: TestClient, content: bytes, filename: str = "rr.zip", **fields: str) -> Any:
    return client.post("/api/models", files={"file": (filename, content, "application/zip")}, data=fields)


def test_upload_registers_and_the_lifecycle_runs_over_rest(models_client: ClientFactory) -> None:
    client = models_client()
    created = upload(client, bundle_zip(), name="rr-rest", owner="ana", version="4")
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["version"], body["status"], body["owner"]) == ("rr-rest", 4, "validated", "ana")
    assert body["contract"] == {"leads": 1, "sample_rate_hz": 250.0, "window_s": 10.0, "input_kind": "rr"}
    assert body["metrics"]["backtest"]["roc_auc"] > 0.9 and set(body["latency_ms"]) == {"1", "4"}
    assert [g["status"] for g in body["gates"]] == ["passed"] * 5

    listed = client.get("/api/models").json()
    assert [(m["name"], m["version"], m["history"]) for m in listed] == [("rr-rest", 4, None)]
    assert client.get("/api/models", params={"status": "active"}).json() == []

    assert client.post("/api/models/rr-rest/4/promote").json()["status"] == "shadow"
    active = client.post("/api/models/rr-rest/4/promote", json={"reason": "good shadow week"}).json()
    assert active["status"] == "active" and active["history"][-1]["reason"] == "good shadow week"
    assert [m["version"] for m in client.get("/api/models", params={"status": "active"}).json()] == [4]
    refused = client.post("/api/models/rr-rest/4/promote")
    assert refused.status_code == 409 and "already active" in refused.json()["detail"]
    assert client.post("/api/models/rr-rest/4/retire").json()["status"] == "retired"
    detail = client.get("/api/models/rr-rest/4").json()
    assert [t["to_status"] for t in detail["history"]] == ["registered", "validated", "shadow", "active", "retired"]

    duplicate = upload(client, bundle_zip(), name="rr-rest", version="4")
    assert duplicate.status_code == 409 and "already registered" in duplicate.json()["detail"]


@pytest.mark.parametrize(
    ("content", "gate", "reason"),
    [
        (PNG, "artifact", "is a PNG image, not a model"),
        (bundle_zip(input_changes={"window_s": 20}), "contract", "20-s window"),
        (bundle_zip(input_changes={"leads": 4}), "contract", "declares 4 leads"),
    ],
    ids=["png", "wrong-window", "wrong-leads"],
)
def test_refused_upload_says_which_gate_and_why_and_keeps_nothing(
    models_client: ClientFactory, tmp_path: Path, content: bytes, gate: str, reason: str
) -> None:
    client = models_client()
    response = upload(client, content, filename="upload.bin")
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["gate"] == gate and reason in detail["reason"] and detail["message"].startswith(f"{gate} gate")
    assert client.get("/api/models").json() == []
    assert [p for p in (tmp_path / "models").rglob("*") if p.is_file()] == []


def test_upload_limits_and_malformed_requests(models_client: ClientFactory) -> None:
    client = models_client(limits=BundleLimits(max_upload_bytes=4096))
    too_large = upload(client, bytes(200_000))
    assert too_large.status_code == 413
    assert client.post("/api/models", data={"name": "x"}).status_code == 422
    assert upload(client, PNG, version="one").status_code == 422


def test_reads_and_transitions_of_unknown_versions(models_client: ClientFactory) -> None:
    client = models_client(uploads=False)
    assert client.get("/api/models").json() == []
    assert client.get("/api/models/nothing/1").status_code == 404
    assert client.post("/api/models/nothing/1/promote").status_code == 404
    assert client.get("/api/models/Bad%20Name/1").status_code == 422
    assert client.get("/api/models/rr/0").status_code == 422
    disabled = upload(client, bundle_zip())
    assert disabled.status_code == 503


def test_writes_need_the_right_role(models_client: ClientFactory, login: Callable[..., dict[str, str]]) -> None:
    client = models_client(headers=None)
    assert upload(client, bundle_zip(), name="rr-roles", version="1").status_code == 401
    viewer = login(client, "viewer")
    scientist = login(client, "data_scientist")
    files = {"file": ("rr.zip", bundle_zip(), "application/zip")}
    assert client.post("/api/models", files=files, data={"name": "rr-roles"}, headers=viewer).status_code == 403
    created = client.post("/api/models", files=files, data={"name": "rr-roles", "version": "1"}, headers=scientist)
    assert created.status_code == 201, created.text
    assert created.json()["owner"].startswith("data_scientist")
    assert client.post("/api/models/rr-roles/1/promote", headers=scientist).status_code == 403
    assert client.post("/api/models/rr-roles/1/promote", headers=ADMIN).json()["status"] == "shadow"
