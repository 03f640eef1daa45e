"""The zoo as committed: the specs cover the brief, every card loads, predicts and keeps its record."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import expit

from features import RR_FEATURE_NAMES, extract
from models import ModelError
from models.data import mitdb_windows
from models.evaluation import expected_calibration_error
from models.serving import DEFAULT_ARTIFACT_DIR
from models.splits import cinc_split, mitdb_split
from models.zoo import (
    FAMILIES,
    ZOO_SPECS,
    ModelBatch,
    ServedModel,
    load_served,
    load_zoo,
    make_batch,
    metrics_by_split,
    profile_latency,
    read_predictions,
    validation_batch,
)
from models.zoo.select import best_single, latency_budget_ms, validation_auc

CARDS = sorted(DEFAULT_ARTIFACT_DIR.glob("*.json"))
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _Payload:
    """Stands for any non-tensor object smuggled into a weights file."""


def test_specs_cover_the_brief() -> None:
    assert len(ZOO_SPECS) >= 24
    assert len({s.name for s in ZOO_SPECS}) == len(ZOO_SPECS)
    assert len({s.stem for s in ZOO_SPECS}) == len(ZOO_SPECS)
    families = Counter(s.family for s in ZOO_SPECS)
    assert {"rr-mlp", "resnet1d"} <= set(families) and {"conv-gru", "conv-transformer"} & set(families)
    assert len(families) >= 3 and set(families) <= set(FAMILIES)
    assert {s.window_s for s in ZOO_SPECS} == {10, 30}
    waveform = [s for s in ZOO_SPECS if s.kind == "waveform"]
    assert {s.leads for s in waveform} == {1, 2}
    assert {(s.window_s, s.leads) for s in waveform} == {(10, 1), (10, 2), (30, 1), (30, 2)}


def test_every_spec_is_committed() -> None:
    committed = {json.loads(p.read_text())["name"] for p in CARDS}
    assert {s.name for s in ZOO_SPECS} <= set(committed)


def test_artifacts_stay_small() -> None:
    total = sum(p.stat().st_size for p in DEFAULT_ARTIFACT_DIR.iterdir() if p.is_file())
    assert total < 20_000_000


@pytest.fixture(scope="module")
def zoo() -> list[ServedModel]:
    return load_zoo()


@pytest.fixture(scope="module")
def real_batch(data_dir: Path) -> tuple[ModelBatch, np.ndarray]:
    """Four 30-s two-lead windows of record 201 as the stream delivers them: two sinus, two AF."""
    windows = [w for w in mitdb_windows(data_dir, "201", 30.0, 30.0) if not w.straddles_change]
    chosen = [w for w in windows if not w.af][:2] + [w for w in windows if w.af][5:7]
    return make_batch([w.signal_mv for w in chosen], 250.0), np.array([w.af for w in chosen], dtype=int)


def test_every_card_loads_and_predicts_on_real_windows(
    zoo: list[ServedModel], real_batch: tuple[ModelBatch, np.ndarray]
) -> None:
    batch, labels = real_batch
    assert len(zoo) == len(CARDS)
    for model in zoo:
        p = model.predict(batch)
        assert p.shape == (4,) and p.dtype == np.float32, model.model_id
        assert np.all((p >= 0) & (p <= 1)), model.model_id
        assert p[labels == 1].mean() > p[labels == 0].mean(), model.model_id
        np.testing.assert_allclose(model.predict(batch.take(slice(0, 1))), p[:1], rtol=1e-4, atol=1e-6)
        assert model.predict(batch.take(slice(0, 0))).shape == (0,)


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.stem)
def test_card_record_is_complete(card_path: Path) -> None:
    model = load_served(card_path)
    card = model.card
    assert card.params == sum(p.numel() for p in model.module.parameters())
    assert set(card.latency_ms) == set(BATCH_SIZES) and all(v > 0 for v in card.latency_ms.values())
    assert card.calibration["method"] == "temperature"
    assert card.calibration["temperature"] == pytest.approx(model.temperature, abs=1e-4)
    for key in ("val/mitdb", "test/mitdb"):
        assert {"roc_auc", "pr_auc", "sens_at_spec95", "ece", "n", "n_pos"} <= set(card.metrics[key])
    if model.contract.kind == "rr" or model.contract.leads == 1:
        assert {"val/cinc", "test/cinc"} <= set(card.metrics)


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.stem)
def test_predictions_match_the_card_and_respect_the_splits(card_path: Path) -> None:
    model = load_served(card_path)
    assert model.card.predictions_file is not None
    predictions = read_predictions(card_path.parent / model.card.predictions_file, model.card.predictions_sha256)
    recomputed = metrics_by_split(predictions)
    assert set(recomputed) == set(model.card.metrics)
    for key, values in model.card.metrics.items():
        for name in ("n", "n_pos", "roc_auc", "pr_auc", "sens_at_spec95", "ece"):
            assert recomputed[key][name] == pytest.approx(values[name], abs=1e-4), (key, name)
    np.testing.assert_allclose(
        predictions.probability, expit(predictions.logit.astype(np.float64) / model.temperature), atol=1e-5
    )
    for dataset, split_of in (("cinc", cinc_split), ("mitdb", mitdb_split)):
        for split in ("val", "test"):
            records = set(predictions.record[predictions.mask(split, dataset)])
            assert all(split_of(r) == split for r in records)  # never a training record, never mixed
    keys = set(zip(predictions.dataset, predictions.record, predictions.start, strict=True))
    assert len(keys) == len(predictions)  # window ids are unique


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.stem)
def test_calibration_does_not_worsen_validation_ece(card_path: Path) -> None:
    model = load_served(card_path)
    predictions = read_predictions(card_path.parent / str(model.card.predictions_file))
    m = predictions.mask("val")
    if model.contract.leads == 2 and model.contract.kind == "waveform":
        m &= predictions.dataset == "mitdb"
    z = predictions.logit[m].astype(np.float64)
    y = predictions.label[m]
    before = expected_calibration_error(expit(z), y)
    after = expected_calibration_error(expit(z / model.temperature), y)
    assert after <= before + 1e-4
    assert model.card.calibration["val_ece_after"] == pytest.approx(after, abs=2e-3)


def test_contract_violations_raise(zoo: list[ServedModel], real_batch: tuple[ModelBatch, np.ndarray]) -> None:
    batch, _ = real_batch
    two_lead = next(m for m in zoo if m.contract.leads == 2 and m.contract.kind == "waveform")
    thirty = next(m for m in zoo if m.contract.window_s == 30 and m.contract.kind == "waveform")
    rr_model = next(m for m in zoo if m.contract.kind == "rr")
    with pytest.raises(ModelError, match="lead"):
        two_lead.predict(ModelBatch(batch.waveforms[:, :1], batch.rr_vectors))
    with pytest.raises(ModelError, match="samples"):
        thirty.predict(ModelBatch(batch.waveforms[:, :, -2500:], batch.rr_vectors))
    with pytest.raises(ModelError, match="RR"):
        rr_model.predict(ModelBatch(batch.waveforms, batch.rr_vectors[:, :5]))
    bad = batch.waveforms.copy()
    bad[0, 0, -10] = np.nan
    with pytest.raises(ModelError, match="non-finite"):
        thirty.predict(ModelBatch(bad, batch.rr_vectors))
    with pytest.raises(ModelError):
        ModelBatch(batch.waveforms, batch.rr_vectors[:2])


def test_make_batch_resamples_and_computes_rr_vectors(data_dir: Path) -> None:
    import wfdb

    raw = wfdb.rdrecord(str(data_dir / "mitdb" / "201"), sampto=3600 * 2)
    windows = [raw.p_signal[:3600].T.astype(np.float32), raw.p_signal[3600:].T.astype(np.float32)]
    batch = make_batch(windows, 360.0)
    assert batch.waveforms.shape == (2, 2, 2500) and batch.waveforms.dtype == np.float32
    np.testing.assert_array_equal(batch.rr_vectors[0], extract(batch.waveforms[0], 250.0).rr_vector)
    assert batch.rr_vectors.shape == (2, len(RR_FEATURE_NAMES))
    with pytest.raises(ModelError, match="shape"):
        make_batch([windows[0], windows[1][:1]], 360.0)
    with pytest.raises(ModelError, match="non-finite"):
        make_batch([np.full((1, 2500), np.nan, dtype=np.float32)], 250.0)


def test_profile_latency_times_every_batch_size(zoo: list[ServedModel]) -> None:
    model = next(m for m in zoo if m.family == "resnet1d")
    profile = profile_latency(model, batch_sizes=(1, 4), repeats=2)
    assert set(profile) == {1, 4} and all(v > 0 for v in profile.values())


def test_loader_refuses_a_pickled_object_and_a_bad_checksum(tmp_path: Path) -> None:
    card_path = next(p for p in CARDS if "resnet1d" in p.name)
    card = json.loads(card_path.read_text())
    for name in (card_path.name, card["weights_file"], card["predictions_file"]):
        shutil.copy(card_path.parent / name, tmp_path / name)
    weights = tmp_path / card["weights_file"]
    state = dict(torch.load(weights, weights_only=True))
    state["payload"] = _Payload()
    torch.save(state, weights)
    with pytest.raises(ModelError, match="checksum"):
        load_served(tmp_path / card_path.name)
    card["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (tmp_path / card_path.name).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="weights-only"):
        load_served(tmp_path / card_path.name)


def test_selection_respects_contract_and_latency_budget(zoo: list[ServedModel]) -> None:
    assert latency_budget_ms(8) == pytest.approx(156.25)
    assert latency_budget_ms(256) < latency_budget_ms(8)
    best = best_single(zoo, dataset="cinc", leads=1)
    assert best.contract.leads == 1 or best.contract.kind == "rr"
    aucs = [m.card.metrics["val/cinc"]["roc_auc"] for m in zoo if "val/cinc" in m.card.metrics]
    assert best.card.metrics["val/cinc"]["roc_auc"] == max(aucs)
    mean_best = best_single(zoo, leads=1)
    assert validation_auc(mean_best) == max(validation_auc(m) for m in zoo if m.contract.leads == 1)
    for beds in (1, 64, 1024):
        chosen = best_single(zoo, dataset="mitdb", window_s=10.0, leads=2, beds=beds)
        assert chosen.contract.window_s == 10.0
        assert chosen.card.latency_ms[1] <= latency_budget_ms(beds)
    with pytest.raises(ModelError):
        best_single(zoo, dataset="mitdb", beds=10**9)


def test_validation_batch_is_fixed_and_cached(data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "mitdb").mkdir(parents=True)
    for record in ("105", "219"):  # validation records, one with AF
        for ext in ("hea", "dat", "atr"):
            (root / "mitdb" / f"{record}.{ext}").symlink_to(data_dir / "mitdb" / f"{record}.{ext}")
    model = next(m for m in load_zoo() if m.contract.kind == "waveform" and m.contract.window_s == 10)
    batch, labels = validation_batch(root, model.contract, limit=40, cache_dir=tmp_path / "cache")
    again, labels_again = validation_batch(root, model.contract, limit=40, cache_dir=tmp_path / "cache")
    assert batch.waveforms.shape == (40, 2, 2500) and batch.rr_vectors.shape == (40, len(RR_FEATURE_NAMES))
    np.testing.assert_array_equal(batch.waveforms, again.waveforms)
    np.testing.assert_array_equal(labels, labels_again)
    assert 0 < labels.sum() < labels.size
    assert any((tmp_path / "cache").iterdir())
    p = model.predict(batch)
    assert not math.isnan(float(p.mean()))
