"""Turn windows into verdicts: quality gate, features, one batched model call for the scorable ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

import features
from ensemble.errors import EnsembleError
from models.card import InputContract
from models.zoo import ModelBatch, ServedModel, make_batch
from models.zoo.select import best_single

__all__ = ["LegacyRRModel", "Verdict", "WindowModel", "WindowScorer", "select_served"]


@runtime_checkable
class WindowModel(Protocol):
    """What the scorer needs of a served model (:class:`models.zoo.ServedModel` is one)."""

    name: str
    version: int
    contract: InputContract

    def predict(self, batch: ModelBatch) -> np.ndarray: ...


class LegacyRRModel(Protocol):
    """The pre-zoo scorer (``models.serving.RRAFScorer``): probabilities from RR vectors alone."""

    name: str
    version: int

    def predict(self, rr_vectors: np.ndarray) -> np.ndarray: ...


class _LegacyAdapter:
    """Serves a :class:`LegacyRRModel` through the ``predict(ModelBatch)`` call."""

    def __init__(self, model: LegacyRRModel) -> None:
        self.model = model
        self.name = model.name
        self.version = model.version
        window_s = float(getattr(model, "window_s", 10.0))
        self.contract = InputContract(leads=1, sample_rate_hz=250, window_s=window_s, kind="rr")

    def predict(self, batch: ModelBatch) -> np.ndarray:
        return self.model.predict(batch.rr_vectors)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one window."""

    state: Literal["ok", "unscorable"]
    risk: float | None
    reason: str | None
    quality: float | None
    heart_rate_bpm: float | None
    models: tuple[str, ...]


def select_served(models: Sequence[ServedModel], window_s: float, leads: int = 2) -> list[ServedModel]:
    """The models a worker serves: the best for ``leads``-lead windows, then the best one-lead fallback.

    Both are :func:`models.zoo.select.best_single`: the best mean validation ROC-AUC (over the data sets
    each model is measured on) among models whose window is at most ``window_s`` seconds (a shorter model
    reads the last part of the window). The fallback serves beds that deliver fewer leads; it is dropped
    when it is the same model.
    """
    primary = best_single(models, window_s=window_s, leads=leads)
    chosen = [primary]
    if leads > 1:
        fallback = best_single(models, window_s=window_s, leads=1)
        if fallback is not primary:
            chosen.append(fallback)
    return chosen


class WindowScorer:
    """Scores windows with the served model(s); windows that fail the quality gate come out ``unscorable``.

    Parameters
    ----------
    model : WindowModel or sequence of WindowModel
        The served model, or models in order of preference: each window goes to the first whose contract
        it satisfies (enough leads and samples). A pre-zoo RR scorer is accepted too.
    """

    def __init__(self, model: WindowModel | LegacyRRModel | Sequence[WindowModel]) -> None:
        candidates = list(model) if isinstance(model, Sequence) else [model]
        if not candidates:
            raise EnsembleError("WindowScorer needs at least one model")
        self.models: list[WindowModel] = [
            m if isinstance(m, WindowModel) else _LegacyAdapter(m)  # type: ignore[arg-type]
            for m in candidates
        ]
        self.model = self.models[0]
        self.model_ids = (f"{self.model.name}@{self.model.version}",)

    @classmethod
    def from_zoo(cls, models: Sequence[ServedModel], window_s: float = 10.0, leads: int = 2) -> WindowScorer:
        """Serve the best zoo model for the worker's window (and a one-lead fallback): :func:`select_served`."""
        return cls(select_served(models, window_s, leads))

    def _route(self, signal: np.ndarray, sample_rate_hz: float) -> int | None:
        for i, m in enumerate(self.models):
            c = m.contract
            if signal.shape[0] >= c.leads and signal.shape[1] / sample_rate_hz >= c.window_s - 1e-9:
                return i
        return None

    def score(self, signals: Sequence[np.ndarray], sample_rate_hz: float) -> list[Verdict]:
        """Score ``(n_leads, n)`` millivolt windows; NaN samples mark a gap and make a window unscorable.

        Scorable windows are batched: one ``predict`` call per served model (and window shape) in use.
        """
        verdicts: list[Verdict | None] = [None] * len(signals)
        groups: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        extracted: dict[int, features.WindowFeatures] = {}
        for i, signal in enumerate(signals):
            missing = int(np.isnan(signal[0]).sum())
            if missing:
                verdicts[i] = Verdict(
                    "unscorable", None, f"gap: {missing / sample_rate_hz:.2f} s missing", None, None, ()
                )
                continue
            feats = features.extract(signal, sample_rate_hz)
            extracted[i] = feats
            if not feats.quality.ok:
                verdicts[i] = Verdict(
                    "unscorable", None, feats.quality.reason, feats.quality.sqi, feats.heart_rate_bpm, ()
                )
                continue
            route = self._route(signal, sample_rate_hz)
            if route is None:
                c = self.models[-1].contract  # the least demanding model served
                verdicts[i] = Verdict(
                    "unscorable",
                    None,
                    f"contract: needs {c.leads} lead(s) and {c.window_s:g} s",
                    feats.quality.sqi,
                    feats.heart_rate_bpm,
                    (),
                )
                continue
            groups.setdefault((route, np.shape(signal)), []).append(i)
        for (route, _), members in groups.items():
            model = self.models[route]
            rr = np.stack([extracted[i].rr_vector for i in members]).astype(np.float32)
            batch = make_batch([signals[i] for i in members], sample_rate_hz, rr)
            risks = model.predict(batch)
            ids = (f"{model.name}@{model.version}",)
            for i, risk in zip(members, risks, strict=True):
                feats = extracted[i]
                verdicts[i] = Verdict("ok", float(risk), None, feats.quality.sqi, feats.heart_rate_bpm, ids)
        return [v for v in verdicts if v is not None]
