"""RR-feature AF detector: a small MLP with built-in standardisation and temperature calibration."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.errors import ModelError

__all__ = ["STANDARDISED_CLAMP", "RRAFNet"]

STANDARDISED_CLAMP = 8.0


class RRAFNet(nn.Module):
    """MLP on the RR feature vector of one window; ``hidden=()`` makes it logistic regression.

    Buffers (saved in the state dict): ``feature_mean`` and ``feature_std`` (training-set
    standardisation, shape ``(n_features,)``) and ``temperature`` (scalar, fitted on validation).

    Parameters
    ----------
    n_features : int
        Length of the input vector, ``len(features.RR_FEATURE_NAMES)``.
    hidden : sequence of int
        Widths of the hidden layers.
    dropout : float
        Dropout probability after each hidden layer (training only).
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    temperature: torch.Tensor

    def __init__(self, n_features: int, hidden: Sequence[int] = (32, 16), dropout: float = 0.1) -> None:
        super().__init__()
        if n_features < 1:
            raise ModelError(f"n_features must be positive, got {n_features}")
        self.n_features = n_features
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = float(dropout)
        layers: list[nn.Module] = []
        width = n_features
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(self.dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.register_buffer("temperature", torch.ones(()))

    def set_standardisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the training-set feature mean and standard deviation (zero SDs become 1)."""
        if mean.shape != (self.n_features,) or std.shape != (self.n_features,):
            raise ModelError(f"mean/std must have shape ({self.n_features},)")
        self.feature_mean.copy_(mean.to(self.feature_mean))
        self.feature_std.copy_(torch.where(std > 0, std, torch.ones_like(std)).to(self.feature_std))

    def set_temperature(self, temperature: float) -> None:
        """Store the calibration temperature (> 0)."""
        if not temperature > 0:
            raise ModelError(f"temperature must be positive, got {temperature}")
        self.temperature.fill_(float(temperature))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logit of AF.

        Parameters
        ----------
        x : torch.Tensor
            RR feature vectors, shape ``(batch, n_features)``, float32.

        Returns
        -------
        torch.Tensor
            Logits, shape ``(batch,)``.
        """
        z = ((x - self.feature_mean) / self.feature_std).clamp(-STANDARDISED_CLAMP, STANDARDISED_CLAMP)
        return self.net(z).squeeze(-1)

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated AF probability, ``sigmoid(logit / temperature)``, shape ``(batch,)``."""
        return torch.sigmoid(self.forward(x) / self.temperature)
