"""Turn windows into verdicts: quality gate, features, then every ensemble member once per batch.

A :class:`ServingPlan` is what a worker serves: the members (in execution order), the :class:`Combiner` that
turns their logits into one calibrated probability, the budget and the latency the plan was predicted to
have. :class:`WindowScorer` holds the plan in force (a re-plan swaps it between batches) and scores a batch
of windows: the quality gate and features per window, then each member once on all the windows it can read
(one call per member per batch: windows due together are batched across beds). Each window may carry a
deadline (the worker's already allows for publishing the batch's scores one by one): before a member runs,
its predicted time for the batch (its latency profile, times the slowdown measured so far) is checked
against the batch's binding deadline, the earliest of the windows that can still make theirs, because every
window of a batch is published only after its last member. A member that would miss it is skipped by the
whole batch, and those windows' scores are combined from the members that ran, marked partial, the skipped
members named. The first member able to read a window always runs for it, so a window late already still
gets a score; a window late already does not bind the others.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

import features
from ensemble.combine import Combiner
from ensemble.errors import EnsembleError
from ensemble.latency import LatencyModel
from models.card import InputContract
from models.zoo import ModelBatch, ServedModel, make_batch
from models.zoo.select import best_single

__all__ = ["FeatureExtractor", "LegacyRRModel", "ServingPlan", "Verdict", "WindowModel", "WindowScorer",
           "select_served"]

#: :func:`features.extract_batch`, or something that computes exactly that elsewhere
#: (:class:`ensemble.feature_process.FeatureProcess`)
FeatureExtractor = Callable[[Sequence[np.ndarray], float], list[features.WindowFeatures]]


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


_P_CLIP = 1e-7


def _model_id(model: WindowModel) -> str:
    return getattr(model, "model_id", None) or f"{model.name}@{model.version}"


def _member_logits(model: WindowModel, batch: ModelBatch) -> np.ndarray:
    """Uncalibrated logits where the model has them, else ``logit(p)`` of its probabilities (temperature 1)."""
    logits = getattr(model, "logits", None)
    if callable(logits):
        return np.asarray(logits(batch), dtype=np.float64)
    p = np.clip(np.asarray(model.predict(batch), dtype=np.float64), _P_CLIP, 1.0 - _P_CLIP)
    return np.log(p) - np.log1p(-p)


def _member_temperature(model: WindowModel) -> float:
    return float(getattr(model, "temperature", 1.0)) if callable(getattr(model, "logits", None)) else 1.0


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
    """The outcome for one window; ``models`` ran for it, ``skipped`` would have but had no time."""

    state: Literal["ok", "unscorable"]
    risk: float | None
    reason: str | None
    quality: float | None
    heart_rate_bpm: float | None
    models: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.skipped)


@dataclass(frozen=True, slots=True)
class ServingPlan:
    """An ensemble in force: members in execution order, their combiner, and what was predicted for it.

    ``fallback`` models serve windows that no member can read (a bed with one lead when every member
    needs two); they are not part of the combined score otherwise.
    """

    members: tuple[WindowModel, ...]
    combiner: Combiner
    plan_id: int = 0
    budget_ms: float = math.inf
    predicted_p50_ms: float = math.nan
    predicted_p99_ms: float = math.nan
    objective: float = math.nan
    reason: str = "start"
    fallback: tuple[WindowModel, ...] = ()

    def __post_init__(self) -> None:
        if not self.members:
            raise EnsembleError("a plan needs at least one member")
        if tuple(self.combiner.members) != self.member_ids:
            raise EnsembleError(f"combiner members {self.combiner.members} are not the plan's {self.member_ids}")

    @property
    def member_ids(self) -> tuple[str, ...]:
        return tuple(_model_id(m) for m in self.members)

    @classmethod
    def of(cls, models: Sequence[WindowModel], **fields: object) -> ServingPlan:
        """A plan of ``models`` combined with their own temperatures and an ensemble temperature of 1."""
        combiner = Combiner(tuple(_model_id(m) for m in models), tuple(_member_temperature(m) for m in models))
        return cls(tuple(models), combiner, **fields)  # type: ignore[arg-type]


def select_served(models: Sequence[ServedModel], window_s: float, leads: int = 2) -> list[ServedModel]:
    """The single-model plan: the best for ``leads``-lead windows, then the best one-lead fallback.

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


#: Called after every member call: (model id, batch size, seconds), and after feature extraction with
#: :data:`FEATURES` as the id and the number of windows.
TimingHook = Callable[[str, int, float], None]
FEATURES = "features"


class WindowScorer:
    """Scores windows with the plan in force; windows that fail the quality gate come out ``unscorable``.

    Parameters
    ----------
    plan : ServingPlan, WindowModel, LegacyRRModel or sequence of WindowModel
        The plan, or a model, or models in order of preference (the first is the plan's only member, the
        others its fallbacks: each window goes to the first whose contract it satisfies).
    latency : LatencyModel, optional
        Predicts each member's time per batch for deadline checks; without it deadlines are not checked.
    on_timing : callable, optional
        Told every member call's batch size and duration (the worker's slowdown estimate).
    extract : callable, optional
        Feature extraction of a batch: :func:`features.extract_batch` (default), or the worker's
        :class:`ensemble.feature_process.FeatureProcess`.
    """

    def __init__(
        self,
        plan: ServingPlan | WindowModel | LegacyRRModel | Sequence[WindowModel],
        latency: LatencyModel | None = None,
        on_timing: TimingHook | None = None,
        clock: Callable[[], float] = time.time,
        extract: FeatureExtractor = features.extract_batch,
    ) -> None:
        if not isinstance(plan, ServingPlan):
            candidates = list(plan) if isinstance(plan, Sequence) else [plan]
            if not candidates:
                raise EnsembleError("WindowScorer needs at least one model")
            models: list[WindowModel] = [
                m if isinstance(m, WindowModel) else _LegacyAdapter(m)  # type: ignore[arg-type]
                for m in candidates
            ]
            plan = ServingPlan.of(models[:1], fallback=tuple(models[1:]))
        self.plan = plan
        self.latency = latency
        self.on_timing = on_timing
        self.clock = clock
        self.extract = extract

    @classmethod
    def from_zoo(cls, models: Sequence[ServedModel], window_s: float = 10.0, leads: int = 2) -> WindowScorer:
        """Serve the best zoo model for the worker's window (and a one-lead fallback): :func:`select_served`."""
        return cls(select_served(models, window_s, leads))

    @property
    def models(self) -> list[WindowModel]:
        """Members, then fallbacks."""
        return [*self.plan.members, *self.plan.fallback]

    @property
    def model(self) -> WindowModel:
        return self.plan.members[0]

    @property
    def model_ids(self) -> tuple[str, ...]:
        return self.plan.member_ids

    @staticmethod
    def _reads(model: WindowModel, signal: np.ndarray, sample_rate_hz: float) -> bool:
        c = model.contract
        return signal.shape[0] >= c.leads and signal.shape[1] / sample_rate_hz >= c.window_s - 1e-9

    def score(
        self,
        signals: Sequence[np.ndarray],
        sample_rate_hz: float,
        deadlines_s: Sequence[float] | None = None,
    ) -> list[Verdict]:
        """Score ``(n_leads, n)`` millivolt windows; NaN samples mark a gap and make a window unscorable.

        Parameters
        ----------
        signals : sequence of numpy.ndarray
            The windows.
        sample_rate_hz : float
            Their sample rate.
        deadlines_s : sequence of float, optional
            Per window, the wall-clock time (``clock()``, Unix s) by which its score must be out; members
            predicted to finish later skip that window (see the module docstring). None: no deadlines.
        """
        plan = self.plan  # one plan per batch even if a re-plan swaps it meanwhile
        started = time.perf_counter()
        verdicts: list[Verdict | None] = [None] * len(signals)
        complete: list[int] = []
        for i, signal in enumerate(signals):
            missing = int(np.isnan(signal[0]).sum())
            if missing:
                verdicts[i] = Verdict(
                    "unscorable", None, f"gap: {missing / sample_rate_hz:.2f} s missing", None, None, ()
                )
            else:
                complete.append(i)
        # one stacked pass over the batch: the same features as window by window, in less time
        batch = self.extract([signals[i] for i in complete], sample_rate_hz)
        extracted: dict[int, features.WindowFeatures] = dict(zip(complete, batch, strict=True))
        scorable: list[int] = []
        for i, feats in extracted.items():
            if not feats.quality.ok:
                verdicts[i] = Verdict(
                    "unscorable", None, feats.quality.reason, feats.quality.sqi, feats.heart_rate_bpm, ()
                )
                continue
            scorable.append(i)
        if self.on_timing is not None and extracted:
            self.on_timing(FEATURES, len(extracted), time.perf_counter() - started)
        members = plan.members
        n_members = len(members)
        logits = np.full((len(signals), n_members), np.nan)
        reads = np.zeros((len(signals), n_members), dtype=bool)
        for i in scorable:
            for j, m in enumerate(members):
                reads[i, j] = self._reads(m, signals[i], sample_rate_hz)
        ran = np.zeros_like(reads)
        fallback_of: dict[int, int] = {}
        for i in scorable:
            if not reads[i].any():
                k = next((k for k, m in enumerate(plan.fallback) if self._reads(m, signals[i], sample_rate_hz)), None)
                if k is None:
                    c = (plan.fallback or members)[-1].contract  # the least demanding model served
                    feats = extracted[i]
                    verdicts[i] = Verdict("unscorable", None, f"contract: needs {c.leads} lead(s) and {c.window_s:g} s",
                                          feats.quality.sqi, feats.heart_rate_bpm, ())
                else:
                    fallback_of[i] = k
        binding = self._binding_deadline(deadlines_s)
        for j, model in enumerate(members):
            want = [i for i in scorable if reads[i, j]]
            if not want:
                continue
            if self.latency is not None and binding is not None:
                finish = self.clock() + self._predicted_s(_model_id(model), len(want))
                # every window of the batch is published after its last member, so a member runs only if the
                # tightest deadline allows it; a window whose first readable member this is always runs it
                if finish > binding:
                    want = [i for i in want if not ran[i].any()]
            self._run(model, j, want, signals, sample_rate_hz, extracted, logits)
            ran[want, j] = True
        for k, model in enumerate(plan.fallback):
            want = [i for i, kk in fallback_of.items() if kk == k]
            if want:
                column = np.full((len(signals), 1), np.nan)
                self._run(model, 0, want, signals, sample_rate_hz, extracted, column)
                combiner = Combiner((_model_id(model),), (_member_temperature(model),))
                risks = combiner.combine(column[want], np.ones((len(want), 1), dtype=bool))
                for i, risk in zip(want, risks, strict=True):
                    feats = extracted[i]
                    verdicts[i] = Verdict("ok", float(risk), None, feats.quality.sqi, feats.heart_rate_bpm,
                                          (_model_id(model),))
        rows = [i for i in scorable if ran[i].any()]
        if rows:
            risks = plan.combiner.combine(logits[rows], ran[rows])
            ids = plan.member_ids
            for i, risk in zip(rows, risks, strict=True):
                feats = extracted[i]
                used = tuple(ids[j] for j in range(n_members) if ran[i, j])
                skipped = tuple(ids[j] for j in range(n_members) if reads[i, j] and not ran[i, j])
                verdicts[i] = Verdict("ok", float(risk), None, feats.quality.sqi, feats.heart_rate_bpm, used, skipped)
        return [v for v in verdicts if v is not None]

    def _binding_deadline(self, deadlines_s: Sequence[float] | None) -> float | None:
        """The deadline every member must meet: the earliest of the windows that can still make theirs (a
        window late already cannot be helped by skipping members that run for the others); the earliest of all
        when none can (then only the first readable members run). None: no deadlines to check."""
        if deadlines_s is None or len(deadlines_s) == 0:
            return None
        deadlines = np.asarray(deadlines_s, dtype=float)
        live = deadlines[deadlines >= self.clock()]
        return float(live.min() if live.size else deadlines.min())

    def _predicted_s(self, model_id: str, batch: int) -> float:
        assert self.latency is not None
        try:
            return self.latency.models_ms([model_id], batch) / 1000.0
        except EnsembleError:
            return 0.0  # no profile: assume it fits (the registry profiles every registered model)

    def _run(self, model: WindowModel, column: int, rows: list[int], signals: Sequence[np.ndarray],
             sample_rate_hz: float, extracted: dict[int, features.WindowFeatures], out: np.ndarray) -> None:
        """One call of ``model`` on ``rows`` (grouped by window shape), logits into ``out[:, column]``."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i in rows:
            by_shape.setdefault(np.shape(signals[i]), []).append(i)
        for group in by_shape.values():
            rr = np.stack([extracted[i].rr_vector for i in group]).astype(np.float32)
            batch = make_batch([signals[i] for i in group], sample_rate_hz, rr)
            start = time.perf_counter()
            out[group, column] = _member_logits(model, batch)
            if self.on_timing is not None:
                self.on_timing(_model_id(model), len(group), time.perf_counter() - start)
