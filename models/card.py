"""Model card: the JSON metadata written next to each artifact's weights."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ModelError

__all__ = ["InputContract", "ModelCard"]


@dataclass(frozen=True, slots=True)
class InputContract:
    """What a model needs from a window: leads, sample rate in Hz, window length in seconds."""

    leads: int
    sample_rate_hz: int
    window_s: float


@dataclass(frozen=True, slots=True)
class ModelCard:
    """Metadata of one trained model version.

    Attributes
    ----------
    name, version, family : str, int, str
        Identity (e.g. ``"rr-af"``, 1) and architecture family (e.g. ``"rr-mlp"``).
    input : InputContract
        Window requirements.
    feature_names : tuple of str
        Names of the input vector's entries, in order.
    architecture : dict
        Constructor arguments of the family's module.
    weights_file, weights_sha256 : str
        State-dict file name (next to the card) and its SHA-256.
    metrics : dict
        Evaluation figures, by split and source.
    seed : int
        Training seed.
    trained_at : str
        ISO 8601 UTC time of training.
    extra : dict
        Anything else worth recording (data counts, hyper-parameters).
    """

    name: str
    version: int
    family: str
    input: InputContract
    feature_names: tuple[str, ...]
    architecture: dict[str, Any]
    weights_file: str
    weights_sha256: str
    metrics: dict[str, Any]
    seed: int
    trained_at: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["feature_names"] = list(self.feature_names)
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
            return cls(
                name=str(data["name"]),
                version=int(data["version"]),
                family=str(data["family"]),
                input=InputContract(**data["input"]),
                feature_names=tuple(data["feature_names"]),
                architecture=dict(data["architecture"]),
                weights_file=str(data["weights_file"]),
                weights_sha256=str(data["weights_sha256"]),
                metrics=dict(data["metrics"]),
                seed=int(data["seed"]),
                trained_at=str(data["trained_at"]),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"invalid model card: {exc}") from exc

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ModelError(f"cannot read model card {path}: {exc}") from exc
