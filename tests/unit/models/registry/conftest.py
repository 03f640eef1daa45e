"""Fixtures of the registry tests: a registry on a real database, and artifact bundle factories."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import create_engine

from models.registry import RegistryStore, upgrade_registry
from models.registry.gates import GateConfig, Gates
from models.registry.registration import RegistrationConfig, Registry
from models.serving import DEFAULT_ARTIFACT_DIR

RR_CARD = DEFAULT_ARTIFACT_DIR / "rr_af_v1.json"
RR_WEIGHTS = DEFAULT_ARTIFACT_DIR / "rr_af_v1.pt"
# Small latency profile: the gate's behaviour, not this machine's speed, is under test.
TEST_GATES = GateConfig(batch_sizes=(1, 4))

BundleFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def shared_gates(data_dir: Path) -> Gates:
    """One gate runner for the session, so the real windows and validation batches are read once."""
    return Gates(data_dir, TEST_GATES)


@pytest.fixture
def registry(database_url: str, tmp_path: Path, shared_gates: Gates, data_dir: Path) -> Iterator[Registry]:
    """A registry on a fresh database (SQLite and PostgreSQL) with its own artifact folder."""
    engine = create_engine(database_url)
    upgrade_registry(engine)
    config = RegistrationConfig(artifact_root=tmp_path / "state" / "models", data_dir=data_dir, gates=TEST_GATES)
    yield Registry(RegistryStore(engine), config, gates=shared_gates)
    engine.dispose()


def stored_files(registry: Registry) -> list[str]:
    """Every file under the registry's artifact folder, relative, sorted (``.incoming`` must be empty)."""
    root = registry.config.artifact_root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def write_weights(path: Path, state: dict[str, torch.Tensor] | object) -> None:
    """``torch.save`` something (a state dict, or anything for the refusal tests)."""
    torch.save(state, path)


@pytest.fixture
def rr_bundle(tmp_path: Path) -> BundleFactory:
    """Writes a bundle folder from the packaged rr-af artifact, optionally changed.

    ``card`` entries are merged into the card; ``input`` entries into its contract; ``weights`` is a state
    dict (or anything) to save instead of the packaged one; ``raw_weights`` bytes replace the file.
    """
    counter = iter(range(1000))

    def make(
        card: dict[str, Any] | None = None,
        input: dict[str, Any] | None = None,  # noqa: A002 - the card's key
        weights: object = None,
        raw_weights: bytes | None = None,
    ) -> Path:
        folder = tmp_path / f"bundle{next(counter)}"
        folder.mkdir()
        data = json.loads(RR_CARD.read_text())
        # A data scientist's bundle carries no stored predictions; the gates compute the backtest themselves.
        data.pop("predictions_file", None)
        data.update(card or {})
        data["input"].update(input or {})
        target = folder / data["weights_file"]
        if raw_weights is not None:
            target.write_bytes(raw_weights)
        elif weights is not None:
            write_weights(target, weights)
        else:
            shutil.copyfile(RR_WEIGHTS, target)
        data["weights_sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
        (folder / "card.json").write_text(json.dumps(data))
        return folder

    return make


def rr_state() -> dict[str, torch.Tensor]:
    """The packaged rr-af state dict (a fresh copy)."""
    state: dict[str, torch.Tensor] = torch.load(RR_WEIGHTS, weights_only=True)
    return {k: v.clone() for k, v in state.items()}
