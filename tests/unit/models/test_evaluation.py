from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit

from models import ModelError
from models.evaluation import binary_metrics, expected_calibration_error, fit_temperature, nll


def test_ece_by_hand() -> None:
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 1, 1, 1])
    # bin of 0.1: mean label 0.5, gap 0.4; bin of 0.9: mean label 1, gap 0.1; weighted: 0.5 * 0.4 + 0.5 * 0.1.
    assert expected_calibration_error(p, y, n_bins=10) == pytest.approx(0.25)
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0


def test_ece_rejects_mismatched_inputs() -> None:
    with pytest.raises(ModelError):
        expected_calibration_error(np.zeros(3), np.zeros(2))


def test_nll_by_hand() -> None:
    assert nll(np.array([0.0]), np.array([1])) == pytest.approx(math.log(2))
    assert nll(np.array([2.0]), np.array([0]), temperature=2.0) == pytest.approx(math.log(1 + math.e))


def test_temperature_undoes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0.0, 2.0, 20000)
    labels = (rng.random(true_logits.size) < expit(true_logits)).astype(int)
    overconfident = 3.0 * true_logits
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.05)
    before = expected_calibration_error(expit(overconfident), labels)
    after = expected_calibration_error(expit(overconfident / temperature), labels)
    assert after < before / 3


def test_binary_metrics() -> None:
    m = binary_metrics(np.array([-3.0, -1.0, 1.0, 3.0]), np.array([0, 0, 1, 1]))
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0
    assert (m["n"], m["n_pos"]) == (4, 2)
    assert math.isnan(binary_metrics(np.zeros(3), np.zeros(3))["roc_auc"])
