from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import expit

import models.train_rr as train_rr
from features import RR_FEATURE_NAMES
from models import load_rr_af
from models.evaluation import binary_metrics, expected_calibration_error, nll, probability_metrics
from models.serving import DEFAULT_ARTIFACT_DIR
from models.train_rr import FeatureTable, fit_rr_af, main
from models.zoo import read_predictions


def _synthetic_table(n: int = 900, seed: int = 0) -> FeatureTable:
    """Separable-ish random features: enough to exercise fitting, not a stand-in for ECG."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int8)
    x = rng.normal(size=(n, len(RR_FEATURE_NAMES))).astype(np.float32) + 1.5 * y[:, None].astype(np.float32)
    return FeatureTable(
        x=x,
        y=y,
        source=np.where((np.arange(n) // 6) % 2 == 0, "cinc", "mitdb"),
        record=np.array([f"r{i // 10}" for i in range(n)]),
        split=np.array(["train", "train", "train", "train", "val", "test"] * (n // 6)),
        ok=np.ones(n, dtype=bool),
        straddles=np.zeros(n, dtype=bool),
    )


def test_temperature_scaling_does_not_worsen_validation_ece(val_table: FeatureTable) -> None:
    scorer = load_rr_af()
    mask = val_table.usable("val")
    with torch.inference_mode():
        logits = scorer.model(torch.from_numpy(val_table.x[mask])).numpy().astype(np.float64)
    labels = val_table.y[mask]
    temperature = float(scorer.model.temperature)
    calibrated = expected_calibration_error(expit(logits / temperature), labels)
    uncalibrated = expected_calibration_error(expit(logits), labels)
    assert calibrated <= uncalibrated + 1e-3
    assert nll(logits, labels, temperature) <= nll(logits, labels)


def test_committed_metrics_are_reproduced_with_the_current_features(val_table: FeatureTable) -> None:
    scorer = load_rr_af()
    predictions = read_predictions(DEFAULT_ARTIFACT_DIR / str(scorer.card.predictions_file))
    for source in ("cinc", "mitdb"):
        mask = val_table.usable("val", source)
        with torch.inference_mode():
            logits = scorer.model(torch.from_numpy(val_table.x[mask])).numpy()
        recomputed = binary_metrics(logits, val_table.y[mask], float(scorer.model.temperature))
        # The zoo record also scores the zero-padded windows of CinC records shorter than 10 s.
        rows = predictions.mask("val", source) & (predictions.start >= 0)
        committed = probability_metrics(predictions.probability[rows], predictions.label[rows])
        # The committed predictions come from `holmes train` with the current quality gate: the same windows,
        # the same scores (up to float32 rounding of the stored probabilities).
        assert recomputed["n"] == committed["n"], "window counts moved: the gate changed, run `holmes train`"
        assert recomputed["roc_auc"] == pytest.approx(committed["roc_auc"], abs=1e-4)
        assert recomputed["pr_auc"] == pytest.approx(committed["pr_auc"], abs=1e-4)
        assert scorer.card.metrics[f"val/{source}"]["roc_auc"] == pytest.approx(committed["roc_auc"], abs=2e-3)


def test_fit_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train_rr, "MAX_EPOCHS", 40)  # enough to compare runs; the full budget only costs time
    table = _synthetic_table()
    first, info = fit_rr_af(table, seed=0)
    second, _ = fit_rr_af(table, seed=0)
    other, _ = fit_rr_af(table, seed=1)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    assert not torch.equal(first.state_dict()["net.0.weight"], other.state_dict()["net.0.weight"])
    assert info["best_epoch"] >= 1
    assert float(first.temperature) > 0


def test_cli_writes_a_loadable_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(train_rr, "build_feature_table", lambda *args, **kwargs: _synthetic_table())
    assert main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "test/mitdb" in printed and "ROC-AUC" in printed
    card = json.loads((tmp_path / "out" / "rr_af_v1.json").read_text())
    assert (card["name"], card["version"], card["family"]) == ("rr-af", 1, "rr-mlp")
    assert card["input"] == {"leads": 1, "sample_rate_hz": 250, "window_s": 10.0, "kind": "rr"}
    assert card["feature_names"] == list(RR_FEATURE_NAMES)
    assert card["seed"] == 0 and card["trained_at"]
    scorer = load_rr_af(tmp_path / "out")
    assert scorer.predict(np.zeros((1, len(RR_FEATURE_NAMES)), dtype=np.float32)).shape == (1,)
