"""Binary-classifier evaluation and temperature calibration."""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

from models.errors import ModelError

__all__ = [
    "binary_metrics",
    "expected_calibration_error",
    "fit_temperature",
    "fit_temperature_keeping_ece",
    "nll",
    "probability_metrics",
    "sensitivity_at_specificity",
]


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width probability bins.

    Parameters
    ----------
    probabilities : numpy.ndarray
        Predicted probabilities of the positive class, shape ``(n,)``.
    labels : numpy.ndarray
        0/1 labels, shape ``(n,)``.
    n_bins : int
        Number of bins on [0, 1].

    Returns
    -------
    float
        Sum over bins of (bin size / n) * |mean label - mean probability|.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 1 or p.size == 0:
        raise ModelError(f"probabilities and labels must be equal-length vectors, got {p.shape}, {y.shape}")
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, weights=y, minlength=n_bins) - np.bincount(bins, weights=p, minlength=n_bins))
    return float(gap.sum() / count.sum())


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy (nats) of ``sigmoid(logits / temperature)`` against 0/1 labels."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * log_expit(z) + (1.0 - y) * log_expit(-z)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T in [0.05, 20] minimising the validation NLL of ``sigmoid(logit / T)``."""
    result = minimize_scalar(
        lambda log_t: nll(logits, labels, math.exp(log_t)),
        bounds=(math.log(0.05), math.log(20.0)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(result.x))


def fit_temperature_keeping_ece(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(temperature, nll_fit)``: the NLL-fitted temperature when it does not raise the validation ECE, else 1.

    Minimum NLL and minimum ECE disagree by a hair when a model is already calibrated (T close to 1, a
    small-sample effect); the model then keeps T = 1 rather than trade one for the other, so calibration
    never worsens the ECE of the windows it was fitted on.
    """
    fitted = fit_temperature(logits, labels)
    before = expected_calibration_error(expit(np.asarray(logits, dtype=np.float64)), labels)
    after = expected_calibration_error(expit(np.asarray(logits, dtype=np.float64) / fitted), labels)
    return (fitted if after <= before else 1.0), fitted


def binary_metrics(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> dict[str, float | int]:
    """ROC-AUC, PR-AUC (average precision), ECE, Brier score and NLL of calibrated probabilities.

    AUCs are NaN when only one class is present.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = expit(np.asarray(logits, dtype=np.float64) / temperature)
    both = 0 < y.sum() < y.size
    return {
        "n": int(y.size),
        "n_pos": int(y.sum()),
        "roc_auc": float(roc_auc_score(y, p)) if both else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if both else math.nan,
        "ece": expected_calibration_error(p, y),
        "brier": float(brier_score_loss(y, p)),
        "nll": nll(logits, y, temperature),
    }


def sensitivity_at_specificity(probabilities: np.ndarray, labels: np.ndarray, specificity: float = 0.95) -> float:
    """Highest sensitivity of any threshold whose specificity is at least ``specificity``.

    Parameters
    ----------
    probabilities : numpy.ndarray
        Scores of the positive class, shape ``(n,)``.
    labels : numpy.ndarray
        0/1 labels, shape ``(n,)``.
    specificity : float
        Required specificity in [0, 1].

    Returns
    -------
    float
        Sensitivity (true-positive rate) in [0, 1]; NaN when only one class is present.
    """
    y = np.asarray(labels, dtype=np.int64)
    if not 0 < y.sum() < y.size:
        return math.nan
    fpr, tpr, _ = roc_curve(y, np.asarray(probabilities, dtype=np.float64))
    return float(tpr[fpr <= 1.0 - specificity + 1e-12].max())


def probability_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float | int]:
    """ROC-AUC, PR-AUC, sensitivity at 95 % specificity, ECE and Brier score of calibrated probabilities.

    Parameters
    ----------
    probabilities : numpy.ndarray
        Calibrated probabilities of AF, shape ``(n,)``.
    labels : numpy.ndarray
        0/1 labels, shape ``(n,)``.

    Returns
    -------
    dict
        ``n``, ``n_pos``, ``roc_auc``, ``pr_auc`` (average precision), ``sens_at_spec95``, ``ece`` (15 bins),
        ``brier``; AUCs and sensitivity are NaN when only one class is present.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    both = 0 < y.sum() < y.size
    return {
        "n": int(y.size),
        "n_pos": int(y.sum()),
        "roc_auc": float(roc_auc_score(y, p)) if both else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if both else math.nan,
        "sens_at_spec95": sensitivity_at_specificity(p, y, 0.95),
        "ece": expected_calibration_error(p, y),
        "brier": float(brier_score_loss(y, p)),
    }
