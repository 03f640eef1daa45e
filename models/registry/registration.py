"""Registration: unpack an upload, run every gate, then store the artifact and its row all-or-nothing.

The gates run before anything is written. The write is one database transaction in which the weights
are copied into the content-addressed folder ``<artifact_root>/<sha256>/`` (``artifact_root`` is
``HOLMES_STATE_DIR/models``) together with the card as registered (``<name>@<version>.json``); if the
copy or the commit fails, the files this registration created are removed again. A failed gate leaves
no row and no file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from models.registry.bundle import Bundle, BundleLimits, open_bundle
from models.registry.errors import AlreadyRegistered, GateFailed, RegistryError
from models.registry.gates import GateConfig, GateRecorder, GateReport, Gates, Progress, describe_artifact
from models.registry.store import ModelRecord, NewModelVersion, RegistryStore
from models.registry.tables import NAME_LENGTH, ModelStatus
from models.registry.torchscript import load_torchscript
from models.zoo import ServedModel, load_served

__all__ = [
    "NAME_RE",
    "ImportOutcome",
    "RegistrationConfig",
    "Registry",
]

NAME_RE = re.compile(rf"^[a-z0-9][a-z0-9._-]{{0,{NAME_LENGTH - 1}}}$")
STORED_WEIGHTS = {"state_dict": "weights.pt", "torchscript": "model.torchscript.pt"}


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    """Where registered artifacts live, where the gates find real data, and the limits.

    Attributes
    ----------
    artifact_root : pathlib.Path
        Content-addressed artifact folder, ``HOLMES_STATE_DIR/models``.
    data_dir : pathlib.Path
        PhysioNet folder (``HOLMES_DATA_DIR``) for the contract window and the validation backtest.
    gates : GateConfig
        Gate thresholds and workload.
    limits : BundleLimits
        Upload size limits.
    """

    artifact_root: Path
    data_dir: Path
    gates: GateConfig = field(default_factory=GateConfig)
    limits: BundleLimits = field(default_factory=BundleLimits)


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """What ``import_zoo`` did with one packaged card."""

    card: Path
    ref: str
    action: Literal["registered", "skipped", "failed"]
    status: ModelStatus | None
    detail: str


class Registry:
    """The registry as data scientists use it: register with gates, promote, retire, read.

    Parameters
    ----------
    store : RegistryStore
        The database side.
    config : RegistrationConfig
        Artifact folder, data folder and gate settings.
    gates : Gates, optional
        The gate runner (it caches real windows); built from ``config`` by default.
    """

    def __init__(self, store: RegistryStore, config: RegistrationConfig, gates: Gates | None = None) -> None:
        self.store = store
        self.config = config
        self.gates = gates or Gates(config.data_dir, config.gates)

    # -- registration --------------------------------------------------------------------------------

    def register(
        self,
        source: Path,
        *,
        name: str | None = None,
        version: int | None = None,
        owner: str | None = None,
        card: Path | None = None,
        status: ModelStatus = "validated",
        reason: str = "promoted on registration",
        progress: Progress | None = None,
    ) -> ModelRecord:
        """Register the artifact at ``source`` after every gate passed.

        Parameters
        ----------
        source : pathlib.Path
            A bundle folder, ``.zip``/``.tar`` bundle, card ``.json``, or a single ``.pt`` with ``card``.
        name, version : str, int, optional
            Registry name and version; the card's by default.
        owner : str, optional
            Who registers it (shown in ``holmes models list``).
        card : pathlib.Path, optional
            A separate card for a single ``.pt`` upload.
        status : {"validated", "shadow", "active"}
            Where the version starts; beyond ``validated`` only for the packaged-zoo import.
        reason : str
            History reason of the steps beyond ``validated``.
        progress : callable, optional
            Called with a ``GateResult`` as each gate starts and ends.

        Raises
        ------
        GateFailed
            A gate refused the artifact (nothing was written).
        AlreadyRegistered
            ``name@version`` exists.
        """
        registered_at = datetime.now(UTC)
        incoming = self.config.artifact_root / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="upload-", dir=incoming))
        try:
            recorder = GateRecorder(progress)
            with recorder.gate("artifact") as note:
                bundle = open_bundle(Path(source), workdir, card=card, limits=self.config.limits)
                reg_name, reg_version = self._identity(bundle.card, name, version)
                if self.store.exists(reg_name, reg_version):
                    raise AlreadyRegistered(
                        f"{reg_name}@{reg_version} is already registered; versions are immutable (pass another version)"
                    )
                model = self.gates.load(bundle)
                note(describe_artifact(bundle, model))
            report = self.gates.check(model, recorder)
            return self._store(bundle, report, reg_name, reg_version, owner, registered_at, status, reason)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _identity(self, card: dict[str, Any], name: str | None, version: int | None) -> tuple[str, int]:
        reg_name = name if name is not None else card.get("name")
        if not isinstance(reg_name, str) or not NAME_RE.match(reg_name):
            raise GateFailed(
                "artifact",
                f"model name {reg_name!r} must be 1-{NAME_LENGTH} characters of a-z, 0-9, '.', '_', '-' "
                "starting with a letter or digit (pass --name)",
            )
        if version is None:
            card_version = card.get("version")
            version = card_version if isinstance(card_version, int) else self.store.next_version(reg_name)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise GateFailed("artifact", f"version must be a positive integer, not {version!r}")
        return reg_name, version

    def _store(
        self,
        bundle: Bundle,
        report: GateReport,
        name: str,
        version: int,
        owner: str | None,
        registered_at: datetime,
        status: ModelStatus,
        reason: str,
    ) -> ModelRecord:
        folder = self.config.artifact_root / bundle.sha256
        weights_name = STORED_WEIGHTS[bundle.artifact_format]
        card = dict(bundle.card)
        card.update(name=name, version=version, weights_file=weights_name)
        card["weights_sha256"] = bundle.sha256
        card_name = f"{name}@{version}.json"
        if bundle.predictions_path is not None:
            card["predictions_file"] = f"{name}@{version}.predictions.npz"
        model = report.model
        contract = model.contract
        new = NewModelVersion(
            name=name,
            version=version,
            family=str(card["family"]),
            artifact_format=bundle.artifact_format,
            leads=int(contract.leads),
            sample_rate_hz=float(contract.sample_rate_hz),
            window_s=float(contract.window_s),
            input_kind=str(contract.kind),
            artifact_sha256=bundle.sha256,
            artifact_path=f"{bundle.sha256}/{card_name}",
            card=card,
            metrics={"backtest": report.backtest, "card": card.get("metrics", {})},
            latency_ms=report.latency_ms,
            gates=[r.as_dict() for r in report.results],
            owner=owner,
        )
        created: list[Path] = []

        def write_files(_: ModelRecord) -> None:
            if not folder.is_dir():
                staging = self.config.artifact_root / ".incoming" / f"store-{uuid.uuid4().hex}"
                staging.mkdir()
                shutil.copyfile(bundle.weights_path, staging / weights_name)
                try:
                    os.rename(staging, folder)  # atomic: the folder appears complete or not at all
                    created.append(folder)
                except OSError:
                    shutil.rmtree(staging, ignore_errors=True)
                    if not folder.is_dir():  # not a concurrent registration of the same weights
                        raise
            if bundle.predictions_path is not None:
                predictions = folder / str(card["predictions_file"])
                shutil.copyfile(bundle.predictions_path, predictions)
                created.append(predictions)
            target = folder / card_name
            with target.open("x", encoding="utf-8") as handle:
                json.dump(card, handle, indent=2)
            created.append(target)

        try:
            return self.store.add(new, registered_at=registered_at, status=status, actor=owner, reason=reason,
                                  within=write_files)
        except BaseException:
            for path in reversed(created):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            raise

    # -- lifecycle and reads -------------------------------------------------------------------------

    def promote(self, name: str, version: int, *, actor: str | None = None, reason: str | None = None) -> ModelRecord:
        """One step forward: ``validated -> shadow -> active`` (the old active version is retired)."""
        return self.store.promote(name, version, actor=actor, reason=reason)

    def retire(self, name: str, version: int, *, actor: str | None = None, reason: str | None = None) -> ModelRecord:
        """Retire a version (final)."""
        return self.store.retire(name, version, actor=actor, reason=reason)

    def card_path(self, record: ModelRecord) -> Path:
        """The stored card of a version (its weights sit next to it)."""
        return self.config.artifact_root / record.artifact_path

    def load(self, record: ModelRecord, device: str = "cpu") -> ServedModel:
        """The registered version, loaded for inference (weights-only or TorchScript, checksum checked)."""
        if record.artifact_format == "torchscript":
            return load_torchscript(self.card_path(record), device)
        return load_served(self.card_path(record), device)

    # -- the packaged zoo ----------------------------------------------------------------------------

    def import_zoo(
        self,
        artifact_dir: Path | None = None,
        *,
        owner: str = "holmes",
        on_card: Callable[[Path], None] | None = None,
        progress: Progress | None = None,
    ) -> list[ImportOutcome]:
        """Register every packaged card through the gates and make it ``active``; idempotent.

        A version already in the registry is left as it is (reported ``skipped``; a warning if its
        weights differ from the packaged ones). A new version becomes ``active`` unless another version
        of its name is active already, in which case it stops at ``validated``. A card that fails a gate
        is reported ``failed`` and the others still go in.
        """
        from models.serving import DEFAULT_ARTIFACT_DIR

        folder = Path(artifact_dir) if artifact_dir is not None else DEFAULT_ARTIFACT_DIR
        outcomes: list[ImportOutcome] = []
        for card_path in _packaged_cards(folder):
            if on_card is not None:
                on_card(card_path)
            data = json.loads(card_path.read_text(encoding="utf-8"))
            name, version = str(data.get("name")), data.get("version")
            ref = f"{name}@{version}"
            if isinstance(version, int) and self.store.exists(name, version):
                existing = self.store.get(name, version)
                same = existing.card.get("weights_sha256") in (None, data.get("weights_sha256"))
                detail = "already registered" if same else (
                    "already registered with other weights: the packaged artifact changed, bump its version")
                outcomes.append(ImportOutcome(card_path, ref, "skipped", existing.status, detail))
                continue
            target: ModelStatus = "validated" if self.store.versions(name, ("active",)) else "active"
            try:
                record = self.register(card_path, owner=owner, status=target, progress=progress,
                                       reason="packaged zoo model imported")
            except RegistryError as exc:
                outcomes.append(ImportOutcome(card_path, ref, "failed", None, str(exc)))
                continue
            detail = "registered" if target == "active" else "registered; another version is active"
            outcomes.append(ImportOutcome(card_path, record.ref, "registered", record.status, detail))
        return outcomes


def _packaged_cards(folder: Path) -> list[Path]:
    cards = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and "family" in data and "weights_file" in data:
            cards.append(path)
    return cards
