from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from features import RR_FEATURE_NAMES, extract
from models import ModelError, RRAFScorer, load_rr_af
from models.data import mitdb_windows
from models.serving import DEFAULT_ARTIFACT_DIR


class _Payload:
    """Stands for any non-tensor object smuggled into a weights file."""


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (os.getpid, ())


@pytest.fixture(scope="module")
def scorer() -> RRAFScorer:
    return load_rr_af()


def _copy_artifact(tmp_path: Path) -> Path:
    target = tmp_path / "artifacts"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, target)
    return target


def _replace_weights(artifact: Path, write: object) -> None:
    weights = artifact / "rr_af_v1.pt"
    write(weights)  # type: ignore[operator]
    card_path = artifact / "rr_af_v1.json"
    card = json.loads(card_path.read_text())
    card["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card))


def test_committed_artifact_loads(scorer: RRAFScorer) -> None:
    assert (scorer.name, scorer.version, scorer.window_s) == ("rr-af", 1, 10.0)
    assert scorer.card.family == "rr-mlp"
    assert scorer.card.input.leads == 1 and scorer.card.input.sample_rate_hz == 250
    assert scorer.feature_names == RR_FEATURE_NAMES
    assert str(scorer.device) == "cpu"
    assert not scorer.model.training
    assert (DEFAULT_ARTIFACT_DIR / "rr_af_v1.pt").stat().st_size < 32_000


def test_predict_returns_calibrated_probabilities(scorer: RRAFScorer) -> None:
    x = np.random.default_rng(0).normal(size=(5, len(RR_FEATURE_NAMES))).astype(np.float32)
    p = scorer.predict(x)
    assert p.shape == (5,) and p.dtype == np.float32
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(scorer.predict(x[:2]), p[:2], rtol=1e-5)
    assert scorer.predict(np.zeros((0, len(RR_FEATURE_NAMES)), dtype=np.float32)).shape == (0,)


@pytest.mark.parametrize(
    "bad", [np.zeros(len(RR_FEATURE_NAMES)), np.zeros((2, 3)), np.full((1, len(RR_FEATURE_NAMES)), np.nan)]
)
def test_predict_rejects_bad_input(scorer: RRAFScorer, bad: np.ndarray) -> None:
    with pytest.raises(ModelError):
        scorer.predict(bad)


def test_af_windows_score_higher_than_sinus_rhythm(scorer: RRAFScorer, data_dir: Path) -> None:
    def scores(record: str, af: bool) -> np.ndarray:
        vectors = []
        for window in mitdb_windows(data_dir, record, window_s=10.0, hop_s=10.0):
            if window.straddles_change or window.af != af:
                continue
            features = extract(window.signal_mv, window.fs_hz)
            if features.quality.ok:
                vectors.append(features.rr_vector)
        return scorer.predict(np.stack(vectors))

    sinus = scores("100", af=False)
    for record in ("203", "201"):
        af = scores(record, af=True)
        assert af.size >= 30
        assert af.mean() > sinus.mean() + 0.3, record
    assert sinus.mean() < 0.1


def test_weights_only_load_refuses_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "payload": _Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with path.open("wb") as handle:
        pickle.dump({"w": _Exploit()}, handle, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_loader_refuses_a_pickled_object_in_the_artifact(tmp_path: Path) -> None:
    artifact = _copy_artifact(tmp_path)
    state = dict(torch.load(artifact / "rr_af_v1.pt", weights_only=True))
    state["payload"] = _Payload()
    _replace_weights(artifact, lambda path: torch.save(state, path))
    with pytest.raises(ModelError, match="weights-only"):
        load_rr_af(artifact)


def test_loader_checks_the_checksum(tmp_path: Path) -> None:
    artifact = _copy_artifact(tmp_path)
    with (artifact / "rr_af_v1.pt").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelError, match="checksum"):
        load_rr_af(artifact)


def test_loader_refuses_a_feature_mismatch(tmp_path: Path) -> None:
    artifact = _copy_artifact(tmp_path)
    card_path = artifact / "rr_af_v1.json"
    card = json.loads(card_path.read_text())
    card["feature_names"] = list(reversed(card["feature_names"]))
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="retrain"):
        load_rr_af(artifact)


def test_missing_artifact_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        load_rr_af(tmp_path)
