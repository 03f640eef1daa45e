"""Loading trained artifacts for inference: weights-only state dicts plus their JSON model card."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from features import RR_FEATURE_NAMES
from models.card import ModelCard
from models.errors import ModelError
from models.rr_af import RRAFNet
from models.zoo import FAMILIES

__all__ = ["DEFAULT_ARTIFACT_DIR", "FAMILIES", "RRAFScorer", "load_module", "load_rr_af"]

DEFAULT_ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
RR_AF_CARD = "rr_af_v1.json"



def load_module(card_path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Build the module a card describes and load its weights-only state dict, in eval mode.

    Parameters
    ----------
    card_path : pathlib.Path
        The JSON model card; the weights file named in it sits in the same folder.
    device : str or torch.device
        Where the module lives.

    Returns
    -------
    (torch.nn.Module, ModelCard)

    Raises
    ------
    ModelError
        Missing files, a checksum mismatch, an unknown family, or weights that are not a plain state
        dict of tensors (``torch.load(..., weights_only=True)`` refuses arbitrary pickled objects).
    """
    card = ModelCard.read(card_path)
    factory = FAMILIES.get(card.family)
    if factory is None:
        raise ModelError(f"unknown model family {card.family!r} in {card_path}")
    weights_path = card_path.parent / card.weights_file
    try:
        blob = weights_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read weights {weights_path}: {exc}") from exc
    if hashlib.sha256(blob).hexdigest() != card.weights_sha256:
        raise ModelError(f"checksum of {weights_path} does not match its model card")
    try:
        state = torch.load(weights_path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ModelError(f"{weights_path} is not a weights-only state dict: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{weights_path} does not hold a state dict of tensors")
    try:
        module = factory(**card.architecture)
    except (TypeError, ModelError) as exc:
        raise ModelError(f"{card_path}: bad {card.family} architecture {card.architecture}: {exc}") from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{weights_path} does not fit the {card.family} architecture: {exc}") from exc
    return module.to(device).eval(), card


class RRAFScorer:
    """Calibrated AF probability from RR feature vectors, for one loaded ``rr-af`` artifact.

    Parameters
    ----------
    model : RRAFNet
        Loaded module, in eval mode.
    card : ModelCard
        Its model card.
    device : str or torch.device
        Device the module lives on; inputs are moved there.
    """

    def __init__(self, model: RRAFNet, card: ModelCard, device: str | torch.device = "cpu") -> None:
        self.model = model
        self.card = card
        self.device = torch.device(device)
        self.name = card.name
        self.version = card.version
        self.window_s = float(card.input.window_s)
        self.sample_rate_hz = float(card.input.sample_rate_hz)
        self.feature_names = card.feature_names

    def __repr__(self) -> str:
        return f"RRAFScorer(name={self.name!r}, version={self.version}, device={str(self.device)!r})"

    def predict(self, rr_vectors: np.ndarray) -> np.ndarray:
        """Calibrated AF probabilities of a batch of windows.

        Parameters
        ----------
        rr_vectors : numpy.ndarray
            ``features.extract(...).rr_vector`` of each window, shape ``(batch, n_features)``.

        Returns
        -------
        numpy.ndarray
            float32 probabilities in [0, 1], shape ``(batch,)``.
        """
        x = np.asarray(rr_vectors)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ModelError(f"rr_vectors must have shape (batch, {len(self.feature_names)}), got {x.shape}")
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise ModelError("rr_vectors hold non-finite values")
        with torch.inference_mode():
            p = self.model.probability(torch.from_numpy(x).to(self.device))
        return p.cpu().numpy().astype(np.float32, copy=False)


def load_rr_af(artifact_dir: Path | None = None, *, device: str | torch.device = "cpu") -> RRAFScorer:
    """Load the ``rr-af`` v1 artifact (``rr_af_v1.json`` + ``rr_af_v1.pt``).

    Parameters
    ----------
    artifact_dir : pathlib.Path, optional
        Folder holding the artifact; the packaged ``models/artifacts`` by default.
    device : str or torch.device
        Inference device, CPU by default.

    Returns
    -------
    RRAFScorer

    Raises
    ------
    ModelError
        When the artifact is missing, corrupt, or was trained on other features than
        ``features.RR_FEATURE_NAMES``.
    """
    card_path = (artifact_dir or DEFAULT_ARTIFACT_DIR) / RR_AF_CARD
    module, card = load_module(card_path, device)
    if not isinstance(module, RRAFNet):
        raise ModelError(f"{card_path} describes a {card.family} model, not an RR AF model")
    if card.feature_names != RR_FEATURE_NAMES:
        raise ModelError(
            f"{card_path} was trained on features {card.feature_names}, this build computes "
            f"{RR_FEATURE_NAMES}: retrain with python -m models.train_rr"
        )
    return RRAFScorer(module, card, device)
