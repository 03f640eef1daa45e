"""Model card: the JSON metadata written next to each artifact's weights."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from models.errors import ModelError

__all__ = ["InputContract", "InputKind", "ModelCard"]

InputKind = Literal["waveform", "rr"]


@dataclass(frozen=True, slots=True)
class InputContract:
    """What a model needs from a window.

    Attributes
    ----------
    leads : int
        Leads the model reads (1 or 2); the stream must deliver at least this many. One-lead models read
        the first lead of the stream.
    sample_rate_hz : int
        Sample rate of the waveform in Hz (250).
    window_s : float
        Window length in seconds (10 or 30); the model reads the last ``window_s`` seconds it is given.
    kind : {"waveform", "rr"}
        ``"waveform"``: the model reads the samples; ``"rr"``: only the window's RR feature vector.
    """

    leads: int
    sample_rate_hz: int
    window_s: float
    kind: InputKind = "waveform"

    @property
    def n_samples(self) -> int:
        """Samples of the window the model reads, ``window_s * sample_rate_hz``."""
        return round(self.window_s * self.sample_rate_hz)


@dataclass(frozen=True, slots=True)
class ModelCard:
    """Metadata of one trained model version.

    Attributes
    ----------
    name, version, family : str, int, str
        Identity (e.g. ``"rr-af"``, 1) and architecture family (e.g. ``"rr-mlp"``, ``"resnet1d"``).
    input : InputContract
        Window requirements.
    feature_names : tuple of str
        Names of the input vector's entries, in order (``"rr"`` models); empty for waveform models.
    architecture : dict
        Constructor arguments of the family's module.
    weights_file, weights_sha256 : str
        State-dict file name (next to the card) and its SHA-256.
    metrics : dict
        Evaluation figures keyed ``"<split>/<dataset>"`` (``"val/cinc"``, ``"test/mitdb"``, ...), each with
        ``n``, ``n_pos``, ``roc_auc``, ``pr_auc``, ``sens_at_spec95`` (zoo models), ``ece``, ``brier``, ``nll``.
    seed : int
        Training seed.
    trained_at : str
        ISO 8601 UTC time of training.
    extra : dict
        Anything else worth recording (data counts, hyper-parameters).
    calibration : dict
        How probabilities are calibrated, e.g. ``{"method": "temperature", "temperature": 1.3, "fitted_on": ...}``.
    latency_ms : dict of int to float
        Median milliseconds per ``predict`` call by batch size, measured on ``extra["latency_device"]``.
    params : int
        Trainable parameters.
    predictions_file, predictions_sha256 : str or None
        ``.npz`` next to the card with the per-window validation and test predictions (see
        :mod:`models.zoo.records`) and its SHA-256.
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
    calibration: dict[str, Any] = field(default_factory=dict)
    latency_ms: dict[int, float] = field(default_factory=dict)
    params: int = 0
    predictions_file: str | None = None
    predictions_sha256: str | None = None

    @property
    def model_id(self) -> str:
        """``"name@version"``."""
        return f"{self.name}@{self.version}"

    def to_json(self) -> str:
        data = asdict(self)
        data["feature_names"] = list(self.feature_names)
        data["latency_ms"] = {str(k): v for k, v in sorted(self.latency_ms.items())}
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
            feature_names = tuple(data["feature_names"])
            contract = dict(data["input"])
            # Cards written before the input kind existed describe the RR-feature model.
            contract.setdefault("kind", "rr" if feature_names else "waveform")
            if contract["kind"] not in ("waveform", "rr"):
                raise ValueError(f"unknown input kind {contract['kind']!r}")
            return cls(
                name=str(data["name"]),
                version=int(data["version"]),
                family=str(data["family"]),
                input=InputContract(**contract),
                feature_names=feature_names,
                architecture=dict(data["architecture"]),
                weights_file=str(data["weights_file"]),
                weights_sha256=str(data["weights_sha256"]),
                metrics=dict(data["metrics"]),
                seed=int(data["seed"]),
                trained_at=str(data["trained_at"]),
                extra=dict(data.get("extra", {})),
                calibration=dict(data.get("calibration", {})),
                latency_ms={int(k): float(v) for k, v in data.get("latency_ms", {}).items()},
                params=int(data.get("params", 0)),
                predictions_file=data.get("predictions_file"),
                predictions_sha256=data.get("predictions_sha256"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"invalid model card: {exc}") from exc

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ModelError(f"cannot read model card {path}: {exc}") from exc

    def write(self, path: Path) -> None:
        """Write the card as JSON (UTF-8)."""
        path.write_text(self.to_json(), encoding="utf-8")
