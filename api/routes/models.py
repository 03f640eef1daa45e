"""REST for the model registry: upload with gates, list, show, promote, retire.

``models.registry`` (and with it torch) is imported on first use, so importing the api stays light.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import HTTPConnection

from api.auth import Principal, require_read, require_role

if TYPE_CHECKING:
    from models.registry import ModelRecord, RegistryStore
    from models.registry.registration import RegistrationConfig, Registry

router = APIRouter(prefix="/api/models", tags=["models"], dependencies=[Depends(require_read)])

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
ModelName = Annotated[str, Path(pattern=NAME_PATTERN)]
ModelVersion = Annotated[int, Path(ge=1, le=2**31 - 1)]
Status = Literal["registered", "validated", "shadow", "active", "retired"]
# Multipart boundaries and the small text fields come on top of the file itself.
FORM_OVERHEAD_BYTES = 64 << 10
_CHUNK = 1 << 20
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class ModelRegistryState:
    """What the models routes use: the store, and the registration setup when uploads are enabled."""

    store: RegistryStore
    registry: Registry | None


def open_model_registry(engine: Engine, registration: RegistrationConfig | None) -> ModelRegistryState:
    """Migrate the registry tables on ``engine`` and build the routes' state (called by the app's lifespan)."""
    from models.registry import RegistryStore, upgrade_registry
    from models.registry.registration import Registry

    upgrade_registry(engine)
    store = RegistryStore(engine)
    return ModelRegistryState(store, Registry(store, registration) if registration is not None else None)


def get_model_registry(conn: HTTPConnection) -> ModelRegistryState:
    """The registry state built by the lifespan."""
    state: ModelRegistryState = conn.app.state.model_registry
    return state


RegistryDep = Annotated[ModelRegistryState, Depends(get_model_registry)]
#: Data scientists register models; only admins change what is served.
Registrant = Annotated[Principal, Depends(require_role("data_scientist"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]


# -- schemas -------------------------------------------------------------------------------------------


class ContractPublic(BaseModel):
    """A model's input contract."""

    leads: int
    sample_rate_hz: float
    window_s: float
    input_kind: str


class TransitionPublic(BaseModel):
    """One entry of a version's history."""

    from_status: str | None
    to_status: str
    at: datetime
    actor: str | None
    reason: str


class ModelPublic(BaseModel):
    """A registered model version; ``history`` only in the single-version reads and writes."""

    name: str
    version: int
    family: str
    artifact_format: str
    contract: ContractPublic
    status: str
    owner: str | None
    metrics: dict[str, Any]
    latency_ms: dict[int, float]
    gates: list[dict[str, Any]]
    artifact_sha256: str
    registered_at: datetime
    validated_at: datetime | None
    shadow_at: datetime | None
    active_at: datetime | None
    retired_at: datetime | None
    updated_at: datetime
    history: list[TransitionPublic] | None = None

    @classmethod
    def of(cls, record: ModelRecord, *, history: bool = True) -> ModelPublic:
        """From a store record."""
        return cls(
            name=record.name,
            version=record.version,
            family=record.family,
            artifact_format=record.artifact_format,
            contract=ContractPublic(leads=record.leads, sample_rate_hz=record.sample_rate_hz,
                                    window_s=record.window_s, input_kind=record.input_kind),
            status=record.status,
            owner=record.owner,
            metrics=record.metrics,
            latency_ms=record.latency_ms,
            gates=record.gates,
            artifact_sha256=record.artifact_sha256,
            registered_at=record.registered_at,
            validated_at=record.validated_at,
            shadow_at=record.shadow_at,
            active_at=record.active_at,
            retired_at=record.retired_at,
            updated_at=record.updated_at,
            history=[TransitionPublic.model_validate(t, from_attributes=True) for t in record.history]
            if history else None,
        )


class GateFailurePublic(BaseModel):
    """Why an upload was refused: the gate and a reason to act on."""

    gate: str
    reason: str
    message: str


class TransitionRequest(BaseModel):
    """Optional body of promote and retire."""

    reason: Annotated[str, Field(max_length=500)] | None = None


_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": ".zip/.tar bundle (card .json + weights .pt), or a single .pt with card",
                        },
                        "card": {"type": "string", "format": "binary", "description": "card .json for a single .pt"},
                        "name": {"type": "string", "pattern": NAME_PATTERN, "description": "default: the card's"},
                        "version": {"type": "integer", "minimum": 1, "description": "default: the card's"},
                        "owner": {"type": "string", "maxLength": 128},
                    },
                }
            }
        },
    }
}


# -- routes --------------------------------------------------------------------------------------------


@router.get("")
def list_models(
    state: RegistryDep,
    name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    status_filter: Annotated[list[Status] | None, Query(alias="status")] = None,
) -> list[ModelPublic]:
    """Registered versions sorted by name and version, optionally of one name and some statuses."""
    statuses = tuple(status_filter) if status_filter else None
    return [ModelPublic.of(r, history=False) for r in state.store.versions(name, statuses)]


@router.get("/{name}/{version}", responses={404: {"description": "unknown name or version"}})
def get_model(state: RegistryDep, name: ModelName, version: ModelVersion) -> ModelPublic:
    """One version with its gate results and history."""
    from models.registry import ModelNotFound

    try:
        return ModelPublic.of(state.store.get(name, version))
    except ModelNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


def _transition(
    state: ModelRegistryState, name: str, version: int, action: str, reason: str | None, actor: str
) -> ModelPublic:
    from models.registry import ModelNotFound, TransitionRefused

    try:
        step = state.store.promote if action == "promote" else state.store.retire
        return ModelPublic.of(step(name, version, actor=actor, reason=reason))
    except ModelNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except TransitionRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc


@router.post("/{name}/{version}/promote",
             responses={404: {"description": "unknown version"}, 409: {"description": "transition refused"}})
def promote_model(
    state: RegistryDep, user: Admin, name: ModelName, version: ModelVersion, body: TransitionRequest | None = None
) -> ModelPublic:
    """One step forward: validated -> shadow -> active (the previously active version is retired). Admin only."""
    return _transition(state, name, version, "promote", body.reason if body else None, user.username)


@router.post("/{name}/{version}/retire",
             responses={404: {"description": "unknown version"}, 409: {"description": "transition refused"}})
def retire_model(
    state: RegistryDep, user: Admin, name: ModelName, version: ModelVersion, body: TransitionRequest | None = None
) -> ModelPublic:
    """Retire a version (final). Admin only."""
    return _transition(state, name, version, "retire", body.reason if body else None, user.username)


def _text_field(value: object, field: str, max_length: int = 128) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{field} must be text of at most "
                            f"{max_length} characters")
    return value


async def _save(upload: UploadFile, folder: FsPath, limit: int, default: str) -> FsPath:
    """Copy an uploaded file to ``folder`` under a safe name, refusing it past ``limit`` bytes."""
    name = _SAFE_FILENAME.sub("_", FsPath(upload.filename or default).name).lstrip(".") or default
    target = folder / name
    written = 0
    with target.open("wb") as out:
        while chunk := await upload.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"upload over {limit >> 20} MiB")
            out.write(chunk)
    return target


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_UPLOAD_SCHEMA,
    responses={
        409: {"description": "name@version already registered"},
        411: {"description": "Content-Length missing"},
        413: {"description": "upload too large"},
        422: {"model": GateFailurePublic, "description": "a gate refused the artifact; nothing was registered"},
        503: {"description": "uploads not configured on this server"},
    },
)
async def register_model(request: Request, state: RegistryDep, user: Registrant) -> ModelPublic:
    """Upload a bundle; the gates run and the version is registered as validated, or nothing is kept.

    Data scientists and admins; the owner defaults to the signed-in user.
    """
    from models.registry import AlreadyRegistered, GateFailed

    registry = state.registry
    if registry is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="model uploads are not configured here")
    limit = registry.config.limits.max_upload_bytes
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise HTTPException(status.HTTP_411_LENGTH_REQUIRED, detail="send the upload with a Content-Length")
    if int(length) > limit + FORM_OVERHEAD_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"upload over {limit >> 20} MiB")
    async with request.form(max_files=2, max_fields=8, max_part_size=64 << 10) as form:
        upload, card_upload = form.get("file"), form.get("card")
        if not isinstance(upload, UploadFile):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="multipart field 'file' is required")
        name = _text_field(form.get("name"), "name", 64)
        owner = _text_field(form.get("owner"), "owner")
        raw_version = _text_field(form.get("version"), "version", 9)
        if raw_version is not None and not raw_version.isdigit():
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="version must be a positive integer")
        version = int(raw_version) if raw_version is not None else None
        incoming = registry.config.artifact_root / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        folder = FsPath(tempfile.mkdtemp(prefix="http-", dir=incoming))
        try:
            path = await _save(upload, folder, limit, "upload.bin")
            card = None
            if isinstance(card_upload, UploadFile):
                card_dir = folder / "card"
                card_dir.mkdir()
                card = await _save(card_upload, card_dir, 1 << 20, "card.json")
            record = await run_in_threadpool(registry.register, path, name=name, version=version,
                                             owner=owner or user.username, card=card)
        except GateFailed as exc:
            failure = GateFailurePublic(gate=exc.gate, reason=exc.reason, message=str(exc))
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=failure.model_dump()) from exc
        except AlreadyRegistered as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return ModelPublic.of(record)
