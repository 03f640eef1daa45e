"""Turn windows into verdicts: quality gate, features, one batched model call for the scorable ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

import features


class WindowModel(Protocol):
    """What the scorer needs of a served model."""

    name: str
    version: int

    def predict(self, rr_vectors: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one window."""

    state: Literal["ok", "unscorable"]
    risk: float | None
    reason: str | None
    quality: float | None
    heart_rate_bpm: float | None
    models: tuple[str, ...]


class WindowScorer:
    """Scores windows with the served model; windows that fail the quality gate come out ``unscorable``."""

    def __init__(self, model: WindowModel) -> None:
        self.model = model
        self.model_ids = (f"{model.name}@{model.version}",)

    def score(self, signals: Sequence[np.ndarray], sample_rate_hz: float) -> list[Verdict]:
        """Score ``(n_leads, n)`` millivolt windows; NaN samples mark a gap and make a window unscorable."""
        verdicts: list[Verdict | None] = [None] * len(signals)
        scorable: list[int] = []
        vectors: list[np.ndarray] = []
        extracted: dict[int, features.WindowFeatures] = {}
        for i, signal in enumerate(signals):
            missing = int(np.isnan(signal[0]).sum())
            if missing:
                verdicts[i] = Verdict("unscorable", None, f"gap: {missing / sample_rate_hz:.2f} s missing",
                                      None, None, ())
                continue
            feats = features.extract(signal, sample_rate_hz)
            extracted[i] = feats
            if not feats.quality.ok:
                verdicts[i] = Verdict("unscorable", None, feats.quality.reason, feats.quality.sqi,
                                      feats.heart_rate_bpm, ())
                continue
            scorable.append(i)
            vectors.append(feats.rr_vector)
        if scorable:
            risks = self.model.predict(np.stack(vectors).astype(np.float32))
            for i, risk in zip(scorable, risks, strict=True):
                feats = extracted[i]
                verdicts[i] = Verdict("ok", float(risk), None, feats.quality.sqi, feats.heart_rate_bpm,
                                      self.model_ids)
        return [v for v in verdicts if v is not None]
