"""TorchScript artifacts: a ``torch.jit.save`` archive plus a model card, served as a zoo ``ServedModel``.

``torch.jit.load`` reads TorchScript code and tensors; it does not unpickle arbitrary Python objects.
The module follows the zoo's convention: ``forward`` takes the contract's input (waveforms
``(batch, leads, samples)`` for ``kind == "waveform"``, RR vectors ``(batch, n_features)`` for ``"rr"``)
and returns uncalibrated logits ``(batch,)``, and a ``temperature`` buffer calibrates them
(``probability = sigmoid(logit / temperature)``). A scripted or traced zoo module satisfies this as is.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import torch

from features import RR_FEATURE_NAMES
from models.card import ModelCard
from models.errors import ModelError
from models.registry.errors import GateFailed
from models.zoo import ServedModel

__all__ = ["load_torchscript"]


def _card(card_path: Path, sha256: str) -> ModelCard:
    """The card, with the fields a TorchScript upload may leave out filled in."""
    data = json.loads(card_path.read_text(encoding="utf-8"))
    filled = {
        "version": 1, "feature_names": [], "architecture": {}, "metrics": {}, "seed": 0,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"), "weights_sha256": sha256,
    }  # fmt: skip
    filled.update(data)
    try:
        return ModelCard.from_json(json.dumps(filled))
    except ModelError as exc:
        raise GateFailed("artifact", str(exc)) from exc


def load_torchscript(card_path: Path, device: str = "cpu") -> ServedModel:
    """Load a TorchScript artifact described by a card (family ``torchscript``), in eval mode.

    Raises
    ------
    GateFailed
        With gate ``"artifact"``: a checksum mismatch, an archive TorchScript cannot load, no
        ``temperature`` buffer, or RR features other than :data:`features.RR_FEATURE_NAMES`.
    """
    weights_name = json.loads(card_path.read_text(encoding="utf-8"))["weights_file"]
    weights_path = card_path.parent / str(weights_name)
    sha256 = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    card = _card(card_path, sha256)
    if card.weights_sha256 != sha256:
        raise GateFailed("artifact", f"checksum of {weights_path.name} does not match its model card")
    if card.input.kind == "rr" and card.feature_names != RR_FEATURE_NAMES:
        raise GateFailed("artifact", f"an RR model must list feature_names {list(RR_FEATURE_NAMES)} in its card")
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated in favour of torch.export, but the issue asks for it and it loads
            # without unpickling Python objects; the warning is no news to the caller.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(weights_path), map_location=device)
    except (RuntimeError, ValueError) as exc:
        raise GateFailed("artifact", f"{weights_path.name} is not a loadable TorchScript archive: {exc}") from exc
    module.eval()
    if not isinstance(getattr(module, "temperature", None), torch.Tensor):
        raise GateFailed("artifact", "the TorchScript module has no temperature buffer (forward returns logits, "
                         "probability = sigmoid(logit / temperature))")
    try:
        return ServedModel(module, card, device)
    except ModelError as exc:
        raise GateFailed("contract", str(exc)) from exc
