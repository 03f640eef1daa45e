"""Registration through the gates on SQLite and PostgreSQL: success stores everything, failure nothing."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from features import RR_FEATURE_NAMES
from models.registry import AlreadyRegistered, GateFailed
from models.registry.gates import GATES, GateResult
from models.registry.registration import Registry
from models.rr_af import RRAFNet
from models.zoo import ResNet1D, load_served
from tests.unit.models.registry.conftest import RR_CARD, BundleFactory, rr_state, stored_files
from tests.unit.models.registry.test_bundle import PNG, Exploit

RR_SHA = json.loads(RR_CARD.read_text())["weights_sha256"]


def assert_nothing_stored(registry: Registry) -> None:
    assert registry.store.versions() == []
    assert stored_files(registry) == []


def refused(registry: Registry, source: Path, gate: str, **kwargs: Any) -> str:
    with pytest.raises(GateFailed) as info:
        registry.register(source, **kwargs)
    assert info.value.gate == gate, info.value
    assert_nothing_stored(registry)
    return info.value.reason


def test_packaged_rr_af_registers_as_validated_with_its_measurements(registry: Registry) -> None:
    events: list[GateResult] = []
    record = registry.register(RR_CARD, owner="ana", progress=events.append)
    assert (record.ref, record.status, record.owner, record.family) == ("rr-af@1", "validated", "ana", "rr-mlp")
    assert (record.leads, record.sample_rate_hz, record.window_s) == (1, 250.0, 10.0)
    assert [(e.gate, e.status) for e in events] == [(g, s) for g in GATES for s in ("running", "passed")]
    assert [g["gate"] for g in record.gates] == list(GATES)
    backtest = record.metrics["backtest"]
    assert backtest["roc_auc"] > 0.9 and backtest["n_pos"] > 0 and backtest["split"] == "val"
    assert set(record.latency_ms) == {1, 4} and all(ms > 0 for ms in record.latency_ms.values())
    assert [t.to_status for t in record.history] == ["registered", "validated"]
    assert record.registered_at <= record.validated_at  # type: ignore[operator]
    assert stored_files(registry) == [f"{RR_SHA}/rr-af@1.json", f"{RR_SHA}/rr-af@1.predictions.npz",
                                      f"{RR_SHA}/weights.pt"]
    served = registry.load(record)
    assert (served.name, served.version) == ("rr-af", 1)
    assert dataclasses.replace(served.card, weights_file="rr_af_v1.pt", predictions_file="rr_af_v1.npz") == load_served(
        RR_CARD
    ).card


def test_versions_are_immutable_and_share_the_content_addressed_weights(registry: Registry) -> None:
    registry.register(RR_CARD)
    with pytest.raises(AlreadyRegistered, match="rr-af@1 is already registered"):
        registry.register(RR_CARD)
    again = registry.register(RR_CARD, name="rr-af-copy", version=3)
    assert again.ref == "rr-af-copy@3" and again.card["name"] == "rr-af-copy"
    assert stored_files(registry) == [
        f"{RR_SHA}/rr-af-copy@3.json", f"{RR_SHA}/rr-af-copy@3.predictions.npz",
        f"{RR_SHA}/rr-af@1.json", f"{RR_SHA}/rr-af@1.predictions.npz", f"{RR_SHA}/weights.pt",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"leads": 3}, "declares 3 leads; the bedside stream has 1 or 2"),
        ({"leads": 0}, "declares 0 leads"),
        ({"window_s": 20.0}, "declares a 20.0-s window; the stream cuts 10-s and 30-s windows"),
        ({"sample_rate_hz": 360}, "declares 360 Hz; windows arrive at 250 Hz"),
    ],
    ids=["three-leads", "no-leads", "20-s-window", "360-hz"],
)
def test_wrong_contract_is_refused(registry: Registry, rr_bundle: BundleFactory, change: dict[str, Any],
                                   expected: str) -> None:
    assert expected in refused(registry, rr_bundle(input=change), "contract")


def test_a_file_that_is_not_a_model_is_refused(registry: Registry, tmp_path: Path) -> None:
    png = tmp_path / "model.png"
    png.write_bytes(PNG)
    assert "is a PNG image, not a model" in refused(registry, png, "artifact")
    noise = tmp_path / "model.pt"
    noise.write_bytes(np.random.default_rng(1).bytes(10_000))
    assert "not a model" in refused(registry, noise, "artifact")


def test_malicious_pickle_is_refused_and_never_runs(registry: Registry, rr_bundle: BundleFactory,
                                                    tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    reason = refused(registry, rr_bundle(weights={"net.0.weight": Exploit(marker)}), "artifact")
    assert "without being unpickled" in reason
    assert not marker.exists()


def test_a_model_that_outputs_nan_fails_the_smoke_gate(registry: Registry, rr_bundle: BundleFactory) -> None:
    state = rr_state()
    state["net.6.bias"] = torch.full_like(state["net.6.bias"], float("nan"))
    assert "probabilities are NaN or infinite" in refused(registry, rr_bundle(weights=state), "smoke")


def test_random_and_constant_models_fail_the_backtest_floor(registry: Registry, rr_bundle: BundleFactory) -> None:
    torch.manual_seed(5)
    random_net = RRAFNet(23, (32, 16), 0.1)
    state = {k: v.clone() for k, v in random_net.state_dict().items()}
    for key in ("feature_mean", "feature_std"):
        state[key] = rr_state()[key]
    reason = refused(registry, rr_bundle(weights=state), "backtest")
    assert "below the floor 0.80" in reason and "0.5 is chance" in reason
    constant = {k: torch.zeros_like(v) if k.startswith("net.") else v for k, v in rr_state().items()}
    assert "ROC-AUC 0.500 is below" in refused(registry, rr_bundle(weights=constant), "backtest")


def test_a_failed_write_leaves_no_row_and_no_file(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    original = registry.store.add

    def add_then_fail(*args: Any, within: Any, **kwargs: Any) -> Any:
        def write_then_fail(record: Any) -> None:
            within(record)
            assert stored_files(registry)  # the files were written inside the transaction...
            raise OSError("disk full")

        return original(*args, within=write_then_fail, **kwargs)

    monkeypatch.setattr(registry.store, "add", add_then_fail)
    with pytest.raises(OSError, match="disk full"):
        registry.register(RR_CARD)
    assert_nothing_stored(registry)  # ...and are gone with the rolled-back row


@pytest.fixture
def packaged(tmp_path: Path) -> Path:
    """An artifact folder holding only the packaged rr-af (the zoo folder grows as models are trained)."""
    folder = tmp_path / "packaged"
    folder.mkdir()
    for path in (RR_CARD, RR_CARD.with_suffix(".pt"), RR_CARD.with_suffix(".npz")):
        shutil.copyfile(path, folder / path.name)
    return folder


def test_import_zoo_activates_the_packaged_models_once(registry: Registry, packaged: Path) -> None:
    first = registry.import_zoo(packaged)
    assert [(o.ref, o.action, o.status) for o in first] == [("rr-af@1", "registered", "active")]
    record = registry.store.get("rr-af")
    assert record.status == "active" and record.owner == "holmes"
    assert [t.to_status for t in record.history] == ["registered", "validated", "shadow", "active"]
    second = registry.import_zoo(packaged)
    assert [(o.action, o.status, o.detail) for o in second] == [("skipped", "active", "already registered")]


def test_import_zoo_keeps_a_data_scientists_active_version(registry: Registry, packaged: Path) -> None:
    registry.register(RR_CARD, version=2, status="active")
    outcomes = registry.import_zoo(packaged)
    assert [(o.ref, o.status) for o in outcomes] == [("rr-af@1", "validated")]
    assert [r.ref for r in registry.store.active()] == ["rr-af@2"]


class _ScriptedRR(nn.Module):
    """The rr-af network behind the zoo convention: forward gives logits, ``temperature`` calibrates."""

    def __init__(self, temperature: bool = True) -> None:
        super().__init__()
        self.net = RRAFNet(23)
        self.net.load_state_dict(rr_state())
        if temperature:
            self.register_buffer("temperature", self.net.temperature.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward(x)


def _torchscript_bundle(folder: Path, temperature: bool = True) -> Path:
    folder.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13
        # Traced, not scripted: tracing ignores the (postponed) annotations of RRAFNet.
        traced = torch.jit.trace(_ScriptedRR(temperature).eval(), torch.zeros(2, 23))
        traced.save(str(folder / "model.ts"))
    card = {"name": "rr-ts", "version": 1, "family": "torchscript", "weights_file": "model.ts",
            "feature_names": list(RR_FEATURE_NAMES),
            "input": {"leads": 1, "sample_rate_hz": 250, "window_s": 10, "kind": "rr"}}
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_torchscript_registers_and_needs_a_temperature(registry: Registry, tmp_path: Path) -> None:
    record = registry.register(_torchscript_bundle(tmp_path / "ts"))
    assert (record.artifact_format, record.family, record.status) == ("torchscript", "torchscript", "validated")
    assert record.metrics["backtest"]["roc_auc"] > 0.9
    assert any(name.endswith("/model.torchscript.pt") for name in stored_files(registry))
    assert registry.load(record).contract.kind == "rr"
    before = (registry.store.versions(), stored_files(registry))
    with pytest.raises(GateFailed, match="no temperature buffer") as info:
        registry.register(_torchscript_bundle(tmp_path / "bare", temperature=False), name="rr-bare")
    assert info.value.gate == "artifact"
    assert (registry.store.versions(), stored_files(registry)) == before


def _resnet_bundle(folder: Path, declared_leads: int, built_leads: int) -> Path:
    """A small random ResNet1D built for ``built_leads`` whose card declares ``declared_leads``."""
    folder.mkdir()
    architecture = {"leads": built_leads, "width": 8, "depth": 3, "kernel_size": 7, "downsample": 2, "dropout": 0.1}
    torch.manual_seed(0)
    torch.save(ResNet1D(**architecture).state_dict(), folder / "net.pt")
    card = {
        "name": "resnet-test", "version": 1, "family": "resnet1d", "feature_names": [],
        "input": {"leads": declared_leads, "sample_rate_hz": 250, "window_s": 10, "kind": "waveform"},
        "architecture": architecture, "weights_file": "net.pt",
        "weights_sha256": hashlib.sha256((folder / "net.pt").read_bytes()).hexdigest(),
        "metrics": {}, "seed": 0, "trained_at": "2026-11-24T00:00:00+00:00",
    }  # fmt: skip
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_a_card_claiming_more_leads_than_the_network_reads_fails_on_a_real_window(
    registry: Registry, tmp_path: Path
) -> None:
    reason = refused(registry, _resnet_bundle(tmp_path / "r", declared_leads=2, built_leads=1), "contract")
    assert "failed on real windows matching its contract" in reason and "1..1 leads" in reason


def _with_predictions(folder: Path, blob: bytes | None = None, sha256: str | None = None) -> Path:
    """Add a zoo-style predictions file to a bundle (valid unless ``blob`` replaces it)."""
    from models.zoo.records import Predictions, write_predictions

    path = folder / "preds.npz"
    n = 4
    digest = write_predictions(path, Predictions(
        dataset=np.array(["mitdb"] * n), split=np.array(["val"] * n), record=np.array(["219"] * n),
        start=np.arange(n, dtype=np.int64) * 2500, end=np.arange(1, n + 1, dtype=np.int64) * 2500,
        label=np.array([0, 1, 0, 1], dtype=np.int8), probability=np.full(n, 0.5, dtype=np.float32),
        logit=np.zeros(n, dtype=np.float32),
    ))  # fmt: skip
    if blob is not None:
        path.write_bytes(blob)
    card = json.loads((folder / "card.json").read_text())
    card.update(predictions_file="preds.npz", predictions_sha256=sha256 or digest)
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_predictions_file_travels_with_the_card(registry: Registry, rr_bundle: BundleFactory) -> None:
    record = registry.register(_with_predictions(rr_bundle()), name="rr-preds")
    assert record.card["predictions_file"] == "rr-preds@1.predictions.npz"
    assert f"{RR_SHA}/rr-preds@1.predictions.npz" in stored_files(registry)
    assert load_served(registry.card_path(record)).card.predictions_file == "rr-preds@1.predictions.npz"


def test_bad_predictions_files_are_refused(registry: Registry, rr_bundle: BundleFactory, tmp_path: Path) -> None:
    assert "does not match its model card" in refused(
        registry, _with_predictions(rr_bundle(), sha256="0" * 64), "artifact"
    )
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    np.savez(buffer, label=np.array([Exploit(marker)], dtype=object))
    blob = buffer.getvalue()
    reason = refused(registry, _with_predictions(rr_bundle(), blob=blob, sha256=hashlib.sha256(blob).hexdigest()),
                     "artifact")
    assert "predictions file preds.npz" in reason
    assert not marker.exists()  # np.load(allow_pickle=False) never builds the object


def test_a_random_waveform_network_passes_the_checks_but_not_the_backtest(registry: Registry, tmp_path: Path) -> None:
    events: list[GateResult] = []
    with pytest.raises(GateFailed, match="below the floor") as info:
        registry.register(_resnet_bundle(tmp_path / "r", declared_leads=1, built_leads=1), progress=events.append)
    assert info.value.gate == "backtest"
    assert [e.gate for e in events if e.status == "passed"] == ["artifact", "contract", "smoke", "latency"]
    assert_nothing_stored(registry)
