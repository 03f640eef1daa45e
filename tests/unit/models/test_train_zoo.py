"""Zoo training on a tiny synthetic window set: determinism, calibration, artifacts that load, the table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import models.train_zoo as train_zoo
from features import RR_FEATURE_NAMES
from models.windows import PAD_SAMPLES, SignalStore, WindowTable
from models.zoo import ZooSpec, load_served, read_predictions, spec_by_name


def _store(n_leads: int, n_records: int, length: int, rng: np.random.Generator) -> SignalStore:
    offsets = PAD_SAMPLES + np.arange(n_records, dtype=np.int64) * (PAD_SAMPLES + length)
    signal = np.zeros((n_leads, int(offsets[-1]) + length), dtype=np.float32)
    t = np.arange(length) / 250.0
    for i, off in enumerate(offsets):
        period = 0.8 if i % 3 else 0.55  # every third record is the "AF" one: faster beats, more noise
        beat = np.exp(-0.5 * ((t % period) - 0.2) ** 2 / 0.01**2)
        noise = 0.05 if i % 3 else 0.15
        signal[:, off : off + length] = beat + noise * rng.standard_normal((n_leads, length))
    return SignalStore(
        names=np.array([f"r{i}" for i in range(n_records)]),
        offsets=offsets,
        lengths=np.full(n_records, length, dtype=np.int64),
        signal=signal,
    )


def _table(dataset: str, window_s: int, store: SignalStore, rng: np.random.Generator) -> WindowTable:
    width = window_s * 250
    rows, starts, splits = [], [], []
    for r in range(store.names.size):
        split = ("train", "val", "test")[(r // 3) % 3]
        for start in range(0, int(store.lengths[r]) - width + 1, 1250):
            rows.append(r)
            starts.append(start)
            splits.append(split)
    n = len(rows)
    row = np.array(rows, dtype=np.int32)
    label = (row % 3 == 0).astype(np.int8)
    rr = rng.normal(size=(n, len(RR_FEATURE_NAMES))).astype(np.float32) + label[:, None]
    start = np.array(starts, dtype=np.int64)
    return WindowTable(
        dataset=dataset,
        window_s=window_s,
        row=row,
        record=store.names[row],
        start=start,
        end=start + width,
        split=np.array(splits),
        grid=np.where(np.array(splits) == "train", "train", "eval"),
        label=label,
        ok=np.ones(n, dtype=bool),
        straddles=np.zeros(n, dtype=bool),
        rr=rr,
    )


@pytest.fixture(scope="module")
def data() -> train_zoo.ZooData:
    rng = np.random.default_rng(0)
    stores = {"cinc": _store(1, 9, 40 * 250, rng), "mitdb": _store(2, 9, 40 * 250, rng)}
    tables = {ds: {w: _table(ds, w, stores[ds], rng) for w in (10, 30)} for ds in stores}
    return train_zoo.ZooData(stores, tables)


def _tiny(name: str, **kw: object) -> ZooSpec:
    spec = spec_by_name(name)
    budget = {"max_epochs": 2, "steps_per_epoch": 2, "batch_size": 8} if spec.kind == "waveform" else {"max_epochs": 3}
    return dataclasses.replace(spec, **{**budget, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["resnet1d-w8d3-2l-10s", "transformer-d32l2-1l-10s", "rr-logreg-30s"])
def test_fit_is_deterministic(name: str, data: train_zoo.ZooData) -> None:
    spec = _tiny(name)
    first, info = train_zoo.fit_spec(spec, data, seed=0)
    second, _ = train_zoo.fit_spec(spec, data, seed=0)
    other, _ = train_zoo.fit_spec(spec, data, seed=1)
    for key, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[key]), key
    assert any(not torch.equal(t, other.state_dict()[k]) for k, t in first.state_dict().items())
    assert info["training"]["best_epoch"] >= 1
    cal = info["calibration"]
    assert cal["method"] == "temperature" and cal["temperature"] > 0
    assert cal["val_ece_after"] <= cal["val_ece_before"] + 1e-9  # calibration never worsens validation ECE


def test_record_writes_a_loadable_artifact_with_predictions(data: train_zoo.ZooData, tmp_path: Path) -> None:
    spec = _tiny("resnet1d-w8d3-2l-30s")
    module, info = train_zoo.fit_spec(spec, data, seed=0)
    row = train_zoo.record_model(spec, module, info, data, tmp_path, seed=0, profile=False)
    served = load_served(Path(row["card_path"]))
    assert served.model_id == "resnet1d-w8d3-2l-30s@1"
    assert (served.contract.leads, served.contract.window_s, served.contract.kind) == (2, 30.0, "waveform")
    assert served.card.params == sum(p.numel() for p in module.parameters())
    predictions = read_predictions(tmp_path / str(served.card.predictions_file), served.card.predictions_sha256)
    assert set(predictions.dataset) == {"mitdb"}  # two-lead models are measured where there are two leads
    assert set(predictions.split) == {"val", "test"}
    assert set(served.card.metrics) == {"val/mitdb", "test/mitdb"}
    table = train_zoo.format_table([row])
    assert "resnet1d-w8d3-2l-30s" in table and table.count("\n") == 2


def test_main_trains_only_the_named_models(
    data: train_zoo.ZooData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(train_zoo, "load_zoo_data", lambda *args, **kwargs: data)
    tiny = dataclasses.replace(spec_by_name("rr-mlp-h64-10s"), max_epochs=2)
    monkeypatch.setattr(train_zoo, "ZOO_SPECS", (tiny,))
    out = tmp_path / "out"
    assert train_zoo.main(["--data-dir", str(tmp_path), "--out", str(out), "--only", tiny.name, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "rr-mlp-h64-10s" in printed and "rf-rr-10s (baseline)" in printed
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".npz", ".pt"]
    assert train_zoo.main(["--data-dir", str(tmp_path), "--out", str(out), "--only", "nope", "--no-progress"]) == 1
