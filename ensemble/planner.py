"""Re-planning: which ensemble to serve now, recomputed as the load changes, with hysteresis.

A worker asks :meth:`Planner.observe` once a second with what it measures: beds streaming, the most windows
that fell due in one tick (how aligned the beds are), and each model's measured time relative to its
profile (:class:`Slowdown`). The planner keeps the plan in force unless

* **it no longer fits**: its predicted p99 at the observed load is over the budget (beds joined, a burst,
  a model running slower than profiled). Then it sheds at once, without a search (which on a saturated
  machine takes seconds while the queue grows): the best on validation of the plan's own members' subsets and
  of every candidate alone that is predicted within ``budget * (1 - margin)``, or else the best of the lone
  models about as fast as the fastest. The search for the best ensemble at the new load follows as an upgrade
  (below);
* **a better one fits and keeps fitting**: the load has changed (beds left, a slow model recovered) and
  the best ensemble for it beats the plan in force by at least ``min_gain`` validation ROC-AUC, and has
  stayed the best for ``dwell_s`` seconds. Searches are rate-limited and every new measure is a new search,
  so between searches an upgrade already found, or the plan in force before a shed, is checked with one
  prediction instead: a plan shed for a transient (a ward's first seconds) comes back once it fits again.

A new plan must also leave the executor headroom: predicted busy at most ``max_utilisation`` of the time
(default 0.8), so that the contention rising by as much as the planner tolerates without re-planning, or by
the work the plan itself adds, does not tip it into a growing queue.

Hysteresis comes from four things: a new plan is chosen for ``margin`` below the budget
(``budget * (1 - margin)``) but only abandoned above the budget itself, so a load that wobbles around one
boundary does not flip the plan; upgrades wait ``dwell_s``; upgrades need ``min_gain``; and a plan shed
more than once waits twice as long for each shed after the first (at most 8x). Every change
comes with its reason, and the worker logs and publishes it (``<prefix>.plans``).

Selections are memoised by load (beds, phases) and rounded slowdowns, and the exact search runs in about
a second, so the worker calls :meth:`Planner.choose` off its event loop.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, overload

import numpy as np

from ensemble.errors import EnsembleError
from ensemble.latency import LatencyModel, LatencyPrediction, Load, Transport
from ensemble.scoring import FEATURES, FeatureExtractor, ServingPlan
from ensemble.selector import NoFeasibleEnsemble, Selection, ValidationTable, candidates, select

if TYPE_CHECKING:
    from models.zoo import ServedModel

log = logging.getLogger(__name__)

__all__ = ["PlannerConfig", "Planner", "Slowdown", "headroom_p99"]


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    """How the planner chooses (see the module docstring).

    Attributes
    ----------
    budget_ms : float
        End-to-end p99 budget (window acquisition to the dashboard).
    window_s, leads : float, int
        The stream's window and leads (which models are candidates).
    hop_s, chunk_s : float
        The stream's hop and chunk length (the load model).
    margin : float
        A new plan must predict p99 <= ``budget_ms * (1 - margin)``.
    max_utilisation : float
        ... and keep the executor busy at most this share of the time (predicted). Latency is not linear in
        the load: near a utilisation of 1 the queue, so the p99, grows without bound, and a plan predicted
        at 0.88-0.99 (what the search picks at 1,000 beds when only the p99 counts: a few milli-AUC better)
        goes over budget on the first few per cent of extra CPU work, including its own (the contention
        the worker measures rises with the work it adds: 1.75x -> 2.25x after one such upgrade). The default
        is ``1 / change_ratio``: a plan stays stable when the contention rises by as much as the planner lets
        pass without re-planning.
    min_gain : float
        Validation ROC-AUC an upgrade must gain.
    dwell_s : float
        Seconds an upgrade must stay the best before it is made.
    slowdown_step : float
        Slowdowns and contention are rounded to this step before planning.
    search_in_process : bool
        Run searches in a child process (:class:`SearchProcess`): the worker's executor then never waits for
        the GIL while one runs.
    search_interval_s : float
        At most one new search (a load, contention or slowdown not seen before) per this many seconds. Only
        upgrades search (a plan over budget is shed without one), and a search is seconds of pure Python
        that the executor waits on for the GIL, so they are kept rare.
    change_ratio : float
        A measured slowdown or contention replaces the one planned with only when it differs from it by
        more than this factor, so measurement noise neither re-plans nor re-runs the search.
    max_members : int, optional
        Largest ensemble.
    pinned : tuple of str
        Serve exactly these model ids whatever the load (no search, no re-plans): for comparisons that
        must hold the ensemble fixed (``holmes bench --compare``).
    contention : float
        How much slower CPU work is assumed to run than the profiles say until the worker has measured it
        (:class:`Slowdown`): a worker sharing a small machine with the broker, the API and the simulator
        starts with a cheaper ensemble and upgrades once measured, rather than missing deadlines first.
        Probes taken while the executor is idle may raise it but not lower it; the executor's own batches
        may (:meth:`Slowdown.contention_at_least`).
    """

    budget_ms: float = 1000.0
    window_s: float = 10.0
    leads: int = 2
    hop_s: float = 5.0
    chunk_s: float = 1.0
    margin: float = 0.15
    max_utilisation: float = 0.8
    min_gain: float = 0.002
    dwell_s: float = 20.0
    slowdown_step: float = 0.25
    change_ratio: float = 1.25
    search_interval_s: float = 30.0
    max_members: int | None = 6
    contention: float = 1.0
    pinned: tuple[str, ...] = ()
    search_in_process: bool = False

    def __post_init__(self) -> None:
        valid = self.budget_ms > 0 and 0 <= self.margin < 1 and self.min_gain >= 0 and self.dwell_s >= 0 and (
            0 < self.max_utilisation <= 1)
        if not (valid and self.contention >= 1.0):
            raise EnsembleError(f"invalid planner config {self}")


SHED_SUBSETS_UP_TO = 6
"""A plan of at most this many members is shed to the best of all its subsets that fits (:meth:`Planner.shed`)."""

FALLBACK_BUSY_BAND = 0.05
"""How much busier (share of the time) than the least busy candidate a lone model served when nothing fits may
be predicted (:meth:`Planner._fastest`)."""

MIN_TIMED_BATCHES = 32
"""Executor batches :class:`Slowdown` must have timed before their jitter counts, and before the contention they
measure may fall below the configured one (at most the 512 batches it keeps)."""


class Slowdown:
    """Measured / profiled times, as ratios of exponentially decayed sums (a big batch weighs more).

    Two figures: the **contention**, feature extraction's measured time over its idle-machine cost
    (``costs.feature_ms`` per window): how much slower all CPU work runs in the worker, sharing its cores
    with the broker, the API and the simulator; and per model, its measured / profiled time divided by the
    contention: how much slower that model runs than the rest (a model that got slower). Sums, not a mean of
    per-call ratios: a one-window call that waited 5 ms for the GIL would otherwise count as much as a
    200-window batch. Model calls the profile puts under ``min_expected_ms`` are not counted: at that scale
    a measurement is mostly the wait for the GIL or a core, which says nothing about the model.

    A model not measured for ``forget_s`` (shed from the plan, so it no longer runs) drops out of
    :meth:`snapshot` and its next measurement starts afresh: a slowdown seen during a burst would otherwise
    stay with the model for good, and the planner would never bring it back at its real cost. If it is still
    slow once it runs again, it is measured so and shed again (each further shed waits longer to come back).
    """

    def __init__(self, latency: LatencyModel, alpha: float = 0.1, min_expected_ms: float = 2.0,
                 forget_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._latency = latency
        self._keep = 1.0 - alpha
        self._min_expected_ms = min_expected_ms
        self._forget_s = forget_s
        self._clock = clock
        self._sums: dict[str, list[float]] = {}  # id -> [measured s, expected s], decayed per call
        self._at: dict[str, float] = {}  # id -> clock() of its last measurement
        self._lock = threading.Lock()
        #: ``time.monotonic()`` of the last feature timing (the executor's or a probe's)
        self.features_at_s = -math.inf
        self._batch_ratios: deque[float] = deque(maxlen=512)  # measured / idle cost, per executor batch
        self._batch: list[float] | None = None  # the batch being timed: [measured s, idle cost s]

    def _add(self, key: str, measured_s: float, expected_s: float) -> None:
        with self._lock:
            now = self._clock()
            if now - self._at.get(key, now) > self._forget_s:
                self._sums.pop(key, None)  # stale: start afresh
            self._at[key] = now
            sums = self._sums.setdefault(key, [0.0, 0.0])
            sums[0] = sums[0] * self._keep + measured_s
            sums[1] = sums[1] * self._keep + expected_s

    def _ratio(self, key: str) -> float | None:
        sums = self._sums.get(key)
        return sums[0] / sums[1] if sums and sums[1] > 0 else None

    def record(self, model_id: str, batch: int, seconds: float) -> None:
        """One member call (``WindowScorer``'s timing hook; runs on the executor thread)."""
        if batch < 1:
            return
        if model_id == FEATURES:
            expected_s = self._latency.costs.features_ms(batch) / 1000.0
            if expected_s > 0:
                self._add(FEATURES, seconds, expected_s)
                self.features_at_s = time.monotonic()
                # a batch starts with its features: the one before is complete
                with self._lock:
                    if self._batch is not None:
                        self._batch_ratios.append(self._batch[0] / self._batch[1])
                    self._batch = [seconds, expected_s]
            return
        profile = self._latency.profiles.get(model_id)
        if profile is None:
            return
        expected_ms = profile(batch)
        with self._lock:
            if self._batch is not None:
                self._batch[0] += seconds
                self._batch[1] += expected_ms / 1000.0
        if expected_ms >= self._min_expected_ms:
            self._add(model_id, seconds, expected_ms / 1000.0)

    def probe(self, window: np.ndarray, sample_rate_hz: float, extract: FeatureExtractor | None = None) -> None:
        """Time feature extraction of one window here and now, as the executor would: the contention is then
        known before the first windows (a ward that starts streaming loads the machine at once; windows come one
        window length later), and stays current while the executor is idle. ``extract``: the scorer's."""
        import features

        start = time.perf_counter()
        (extract or features.extract_batch)([window], sample_rate_hz)
        expected_s = self._latency.costs.features_ms(1) / 1000.0
        if expected_s > 0:  # the contention only: a probe is not an executor batch
            self._add(FEATURES, time.perf_counter() - start, expected_s)
            self.features_at_s = time.monotonic()

    def snapshot(self) -> dict[str, float]:
        """Per model measured in the last ``forget_s``: measured / profiled time, divided by the contention (1 = as
        slow as everything else)."""
        with self._lock:
            now = self._clock()
            contention = max(1.0, self._ratio(FEATURES) or 1.0)
            return {m: r / contention for m in self._sums
                    if m != FEATURES and now - self._at[m] <= self._forget_s and (r := self._ratio(m)) is not None}

    def jitter(self, levels: int = 16, step: float = 0.1) -> tuple[float, ...]:
        """How much one executor batch's time varies around its mean: equal-probability quantiles of the last 512
        batches' measured / idle-cost ratios (features and every member), divided by their mean, rounded to
        ``step``; ``(1.0,)`` until :data:`MIN_TIMED_BATCHES` were timed."""
        with self._lock:
            ratios = np.array(self._batch_ratios)
        if len(ratios) < MIN_TIMED_BATCHES:
            return (1.0,)
        q = np.quantile(ratios / ratios.mean(), (np.arange(levels) + 0.5) / levels)
        return tuple(float(v) for v in np.maximum(np.round(q / step) * step, step))

    def contention(self) -> float:
        """How much slower CPU work runs here than on the idle machine the costs were measured on (>= 1)."""
        with self._lock:
            return max(1.0, self._ratio(FEATURES) or 1.0)

    def contention_at_least(self, assumed: float) -> float:
        """:meth:`contention`, but not below ``assumed`` until :data:`MIN_TIMED_BATCHES` executor batches were
        timed.

        Probes time feature extraction while the executor is idle, so before the first windows they miss the
        load the plan itself will add: at 1,000 beds a probe read 1.5x during the ward's first seconds, and
        the executor's batches 2.1-2.5x once windows came. The configured contention is the better guess
        until the executor has shown what it is; then the measurement wins, up or down.
        """
        with self._lock:
            timed = len(self._batch_ratios)
        measured = self.contention()
        return measured if timed >= MIN_TIMED_BATCHES else max(measured, assumed)


@dataclass(slots=True)
class _Pending:
    members: tuple[str, ...]
    since_s: float


@dataclass(slots=True)
class Planner:
    """Chooses and re-chooses the served ensemble (see the module docstring).

    Parameters
    ----------
    models : sequence of ServedModel
        The active models (the candidates are those the stream can serve).
    latency : LatencyModel
        Profiles and costs; its ``slowdown`` is replaced by what is observed.
    config : PlannerConfig
    table : ValidationTable, optional
        The candidates' validation predictions (built from their files by default).
    """

    models: Sequence[ServedModel]
    latency: LatencyModel
    config: PlannerConfig = field(default_factory=PlannerConfig)
    table: ValidationTable | None = None
    current: ServingPlan | None = None
    load: Load | None = None
    changes: int = 0
    _by_id: dict[str, ServedModel] = field(default_factory=dict)
    _cache: dict[tuple[object, ...], Selection] = field(default_factory=dict)
    _pending: _Pending | None = None
    _slowdown: dict[str, float] = field(default_factory=dict)
    _contention: float = 1.0
    _old_contention: float = 1.0
    _transport: Transport = field(default_factory=Transport)
    _chunk_ms: float | None = None
    _deliver_ms: float | None = None
    _old_deliver_ms: float | None = None
    _old_chunk_ms: float | None = None
    _jitter: tuple[float, ...] = (1.0,)
    _old_jitter: tuple[float, ...] = (1.0,)
    _old_upstream: tuple[float, float] = (0.0, 0.0)
    _last_search_s: float = -math.inf
    _searcher: SearchProcess | None = None
    _shed_from: tuple[str, ...] | None = None  # the plan in force before a shed, until an upgrade
    _seen: Load | None = None  # the planning load of the last observation
    _inflight: tuple[tuple[object, ...], Future[Selection | None]] | None = None  # (search key, its result)
    _sheds: Counter[frozenset[str]] = field(default_factory=Counter)  # how often each member set was shed
    _multi_lead: frozenset[str] = frozenset()  # candidates that need more than one lead
    _fallback_id: str | None = None  # the one-lead model a plan of only those serves one-lead beds with

    def __post_init__(self) -> None:
        served = candidates(self.models, self.config.window_s, self.config.leads)
        if not served:
            raise EnsembleError(f"no model can serve {self.config.window_s:g}-s {self.config.leads}-lead windows")
        self._by_id = {m.model_id: m for m in served}
        unknown = sorted(set(self.config.pinned) - set(self._by_id))
        if unknown:
            raise EnsembleError(f"pinned models {unknown} are not candidates for this stream: {sorted(self._by_id)}")
        self._contention = self._old_contention = self.config.contention
        self._transport = self.latency.transport
        self._old_upstream = self._upstream_figures(self._transport)
        if self.table is None:
            self.table = ValidationTable.from_models(served, window_s=self.config.window_s)
        self._multi_lead = frozenset(m.model_id for m in served if m.contract.leads > 1)
        one_lead = [m.model_id for m in served if m.contract.leads == 1]
        self._fallback_id = max(one_lead, key=lambda m: (table_objective(self.table, (m,)),
                                                         -self.latency.models_ms([m], 1))) if one_lead else None

    @property
    def candidate_ids(self) -> list[str]:
        return list(self._by_id)

    @property
    def target_ms(self) -> float:
        """What a new plan must be predicted within: ``budget * (1 - margin)``."""
        return self.config.budget_ms * (1.0 - self.config.margin)

    def _moved(self, old: float, new: float) -> bool:
        """Whether ``new`` is more than ``change_ratio`` away from ``old`` (either way)."""
        return not old / self.config.change_ratio <= new <= old * self.config.change_ratio

    def _sticky(self, old: float, new: float) -> float:
        """``new`` rounded to the step when it moved more than ``change_ratio`` away from ``old``, else ``old``."""
        if not self._moved(old, new):
            return old
        step = self.config.slowdown_step
        return max(1.0, round(new / step) * step)

    def _rounded_slowdown(self, slowdown: Mapping[str, float]) -> dict[str, float]:
        out = {m: self._sticky(self._slowdown.get(m, 1.0), r) for m, r in slowdown.items() if m in self._by_id}
        return {m: r for m, r in out.items() if r > 1.0}

    def _measured_cost(self, measured_ms: float | None, prior_ms: float, in_use_ms: float | None) -> float | None:
        """A measured per-event cost (wall ms at the contention in use) as the idle cost to plan with, when it moved
        more than ``change_ratio`` from the one in use (``in_use_ms``, else ``prior_ms``); else ``in_use_ms``."""
        if measured_ms is None or not math.isfinite(measured_ms) or measured_ms <= 0:
            return in_use_ms
        idle = measured_ms / self._contention
        return round(idle, 3) if self._moved(prior_ms if in_use_ms is None else in_use_ms, idle) else in_use_ms

    @staticmethod
    def _upstream_figures(transport: Transport) -> tuple[float, float]:
        """Median and top of the upstream time (ms, at least 1): what decides whether a new measure is taken."""
        up = transport.upstream_ms
        return max(1.0, up[len(up) // 2]), max(1.0, up[-1])

    @staticmethod
    def planning_load(load: Load) -> Load:
        """``load`` with its beds rounded up to a grid 6-12 % apart (64, 68, 72, ..., 992, 1024, ...), so beds
        trickling in and out do not each run a new search; planning for a few beds more is the safe side."""
        spread_s = math.floor(load.spread_s * 4) / 4  # quarter seconds, rounded down: less spread is worse
        bunch_s = min(spread_s, round(load.bunch_s * 40) / 40)  # 25 ms
        if load.beds <= 16:
            return replace(load, spread_s=spread_s, bunch_s=bunch_s)
        grid = 2 ** (load.beds.bit_length() - 5)
        return replace(load, beds=-(-load.beds // grid) * grid, spread_s=spread_s, bunch_s=bunch_s)

    def model(self) -> LatencyModel:
        """The latency model with what was observed so far: slowdowns, contention, transport, chunk cost."""
        costs = self.latency.costs
        if self._chunk_ms is not None:
            costs = replace(costs, chunk_ms=self._chunk_ms)
        if self._deliver_ms is not None:
            costs = replace(costs, deliver_ms=self._deliver_ms)
        return replace(self.latency, costs=costs, slowdown=self._slowdown, contention=self._contention,
                       transport=self._transport, jitter=self._jitter)

    def served(self, members: Sequence[str]) -> tuple[str, ...]:
        """What runs for a plan of ``members``: they, and the best one-lead model when every member needs more
        leads than a one-lead bed has (the plan serves such beds with it, :meth:`build`). Predicted as if the
        fallback ran on every window, the safe side: a two-lead CNN alone at 1,000 beds was predicted 309 ms
        without its fallback and measured 652.

        The search does not count it: its pruning needs a latency that never falls when a member is added, and
        adding a one-lead member drops the fallback. It needs not: a subset of two-lead models alone scores
        about 0.73-0.75 on validation (it cannot read CinC's windows), below any that fits with a one-lead
        member, and a plan the search process returns is checked again with it (:meth:`_collect`)."""
        members = tuple(members)
        if self._fallback_id is None or not members or not set(members) <= self._multi_lead:
            return members
        return (*members, self._fallback_id)

    def predict(self, members: Sequence[str], load: Load) -> LatencyPrediction:
        """Predicted latency of a plan of ``members`` (and its fallback, :meth:`served`) at ``load`` with the
        slowdowns observed so far."""
        return self.model().predict(self.served(members), load)

    def plan_p99(self, members: Sequence[str], load: Load) -> float:
        """What a new plan is held to: the predicted p99 of ``members`` at ``load``, infinite when they would
        keep the executor busy more than ``max_utilisation`` of the time (:func:`headroom_p99`)."""
        return headroom_p99(self.model(), self.served(members), load, self.config.max_utilisation)

    def fit_contention(self, members: Sequence[str], load: Load, measured_p99_ms: float) -> float:
        """The contention at which the model predicts the measured p99 of ``members`` (never below the one in
        use; bisection in log space up to 20x). The worker measures up to publication, so the mean of the
        downstream transport is added."""
        target = measured_p99_ms + self._transport.downstream_mean_ms

        model = self.model()

        def p99(contention: float) -> float:
            return replace(model, contention=contention).predict(self.served(members), load).p99_ms

        lo, hi = self._contention, 20.0
        if p99(lo) >= target:
            return lo
        if p99(hi) < target:
            return hi
        for _ in range(10):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if p99(mid) < target else (lo, mid)
        return hi

    @overload
    def choose(self, load: Load) -> Selection: ...

    @overload
    def choose(self, load: Load, now_s: float, settled: bool = True) -> Selection | None: ...

    def choose(self, load: Load, now_s: float | None = None, settled: bool = True) -> Selection | None:
        """The best ensemble whose predicted p99 at ``load`` is within ``budget * (1 - margin)``; a lone model
        about as fast as the fastest when none is (:meth:`_fastest`, reported with ``method="cheapest"``). With
        ``now_s``, a search that is not memoised yet runs only if none ran in the last ``search_interval_s`` and
        the load is ``settled`` (else None: not now)."""
        key = (load, tuple(sorted(self._slowdown.items())), self._contention, self._transport, self._chunk_ms,
               self._deliver_ms, self._jitter)
        found = self._collect(load) if now_s is not None else None
        if key in self._cache:
            return self._cache[key]
        if now_s is not None:
            if found is not None:
                return found
            if self._inflight is not None or not settled or (
                    now_s - self._last_search_s < self.config.search_interval_s):
                return None
            self._last_search_s = now_s
            if self.config.search_in_process and not self.config.pinned:  # searched while the worker goes on
                try:
                    if self._searcher is None:
                        assert self.table is not None
                        self._searcher = SearchProcess(self.candidate_ids, self.table, self.config.max_members)
                    self._inflight = (key, self._searcher.submit(load, self.model(), self.target_ms,
                                                                 self.config.max_utilisation))
                    return None
                except (BrokenProcessPool, OSError, RuntimeError) as exc:
                    log.warning("the search process failed (%s); searching in this process", exc)
                    self.close()
        if self.config.pinned:
            pinned = self.config.pinned
            chosen = Selection(pinned, self.table.objective(pinned) if self.table else math.nan,
                               self.predict(pinned, load).p99_ms, "pinned", 0)
            self._cache[key] = chosen
            return chosen
        target = self.target_ms
        assert self.table is not None
        table = self.table
        model = self.model()

        def p99(members: tuple[str, ...]) -> float:  # as the search process predicts (see served)
            return headroom_p99(model, members, load, self.config.max_utilisation)

        try:
            chosen = None
            if self.config.search_in_process:
                try:
                    if self._searcher is None:
                        self._searcher = SearchProcess(self.candidate_ids, table, self.config.max_members)
                    chosen = self._searcher.select(load, model, target, self.config.max_utilisation)
                except (BrokenProcessPool, OSError) as exc:  # searched here this time, a new process next time
                    log.warning("the search process failed (%s); searching in this process", exc)
                    self.close()
            if chosen is None:
                chosen = select(self.candidate_ids, table.objective, p99, target, max_members=self.config.max_members)
        except NoFeasibleEnsemble:
            chosen = self._fastest(load)
        self._cache[key] = chosen
        return chosen

    def _collect(self, load: Load) -> Selection | None:
        """The search in flight, once it is done: memoised for the planner's state it was submitted with, and
        returned if the model as it stands now still predicts it within ``budget * (1 - margin)`` at ``load``."""
        if self._inflight is None or not self._inflight[1].done():
            return None
        key, future = self._inflight
        self._inflight = None
        try:
            chosen = future.result()
        except Exception as exc:  # a dead child: the next search starts a new one
            log.warning("the search process failed (%s); a new one for the next search", exc)
            self.close()
            return None
        if chosen is None:  # nothing fits: a lone model about as fast as the fastest, as choose() memoises it
            self._cache[key] = self._fastest(load)
            return None
        self._cache[key] = chosen
        return chosen if self.plan_p99(chosen.members, load) <= self.target_ms else None

    def build(self, selection: Selection, load: Load, reason: str) -> ServingPlan:
        """The serving plan of a selection: members cheapest first (the first always runs), its combiner."""
        assert self.table is not None
        order = self._cheapest_first(selection.members)
        members = tuple(self._by_id[m] for m in order)
        prediction = self.predict(order, load)
        fallback = tuple(self._by_id[m] for m in self.served(order)[len(order):])
        return ServingPlan(
            members=members,
            combiner=self.table.combiner(order),
            plan_id=self.changes,
            budget_ms=self.config.budget_ms,
            predicted_p50_ms=prediction.p50_ms,
            predicted_p99_ms=prediction.p99_ms,
            objective=selection.objective,
            reason=reason,
            fallback=fallback,
        )

    def start(self, load: Load) -> ServingPlan:
        """The first plan, for the load expected at start."""
        self.load = load
        self.current = self.build(self.choose(load), load, f"start: planned for {load.beds} beds")
        return self.current

    def observe(self, now_s: float, load: Load, slowdown: Mapping[str, float] | None = None,
                contention: float | None = None, measured_p99_ms: float | None = None,
                transport: Transport | None = None, chunk_ms: float | None = None,
                jitter: tuple[float, ...] | None = None, deliver_ms: float | None = None) -> ServingPlan | None:
        """Re-plan if needed (see the module docstring); returns the new plan, or None to keep the current.

        ``slowdown`` and ``contention`` are :class:`Slowdown`'s figures (rounded to ``slowdown_step`` here).
        ``measured_p99_ms`` is the worker's own p99 (acquisition to publication) over the last seconds: when
        it comes near the budget and is worse than the model predicts for the plan in force, the contention
        is raised until the model agrees (:meth:`fit_contention`), so an optimistic model cannot keep an
        ensemble that is missing its deadlines. ``transport`` is the measured time outside the executor
        (:meth:`ensemble.latency.Transport.measured`), taken when its median or top differs from the one in
        use by more than ``change_ratio``. ``chunk_ms`` is the event loop's measured time per chunk (wall
        clock, at the contention measured with it), taken as ``costs.chunk_ms`` when it moved by as much.
        ``jitter`` is :meth:`Slowdown.jitter`, taken when its top quantile moved by as much. ``deliver_ms`` is
        the event loop's measured time per published score (wall clock, at the measured contention), taken as
        ``costs.deliver_ms`` the same way: a batch's last score goes out ``batch * deliver_ms`` after its first.
        """
        if self.current is None:
            raise EnsembleError("observe() before start()")
        previous_load = self.load or load
        old_slowdown, old_contention = self._slowdown, self._contention
        self._old_upstream = self._upstream_figures(self._transport)
        if slowdown is not None:
            self._slowdown = self._rounded_slowdown(slowdown)
        if contention is not None:
            self._contention = self._sticky(self._contention, contention)
        if transport is not None and any(
                self._sticky(old, new) != old
                for old, new in zip(self._old_upstream, self._upstream_figures(transport), strict=True)):
            self._transport = transport
        self._old_jitter = self._jitter
        if jitter is not None and jitter and self._sticky(self._jitter[-1], jitter[-1]) != self._jitter[-1]:
            self._jitter = tuple(jitter)
        self._old_chunk_ms = self._chunk_ms
        self._chunk_ms = self._measured_cost(chunk_ms, self.latency.costs.chunk_ms, self._chunk_ms)
        self._old_deliver_ms = self._deliver_ms
        self._deliver_ms = self._measured_cost(deliver_ms, self.latency.costs.deliver_ms, self._deliver_ms)
        load = self.planning_load(load)
        settled, self._seen = load == self._seen, load
        members = self.current.member_ids
        threatened = self.config.budget_ms * (1.0 - self.config.margin / 2)
        if measured_p99_ms is not None and math.isfinite(measured_p99_ms) and (
            measured_p99_ms + self._transport.downstream_mean_ms > threatened
        ):  # the deadlines are really at risk, and the model may not have seen it
            fitted = self.fit_contention(members, load, measured_p99_ms)
            if fitted > self._contention:
                self._contention = self._sticky(self._contention, fitted)
        self._old_contention = old_contention
        now_pred = self.predict(members, load)
        if now_pred.p99_ms > self.config.budget_ms:
            reason = self._why(previous_load, load, old_slowdown, members)
            reason = f"over budget: {reason}; predicted p99 {_ms(now_pred.p99_ms)} > {self.config.budget_ms:.0f} ms"
            cheaper = self.shed(members, load)
            if set(cheaper.members) == set(members) or not cheaper.predicted_p99_ms < now_pred.p99_ms or (
                    len(members) == 1 and cheaper.predicted_p99_ms > self.config.budget_ms):
                # nothing faster is predicted, or only another lone model that misses the budget as well (on
                # a saturated machine the two swapped places every other second as the measures moved):
                # keep it (no flapping), deadline drops shed the load
                self.load = load
                return None
            self._sheds[frozenset(members)] += 1
            if self._shed_from is None:
                self._shed_from = tuple(members)
            return self._switch(cheaper, load, reason)
        # a search only for a load seen at the last observation too: while beds are still joining (a ward
        # starting up: 60, 430, 670, ... beds a second apart) it would spend the one search per interval on a
        # load gone a second later
        best = self.choose(load, now_s, settled)
        if best is None:  # no search now: a candidate already found may still be taken, if it still fits
            best = self._unsearched(load)
            if best is None:
                return None
        same = set(best.members) == set(members)
        if same or best.objective < self.current.objective + self.config.min_gain:
            self._pending = None
            self.load = load if same else self.load
            return None
        if self._pending is None or self._pending.members != best.members:
            self._pending = _Pending(best.members, now_s)
            return None
        dwell_s = self.dwell_s(best.members)
        if now_s - self._pending.since_s < dwell_s:
            return None
        reason = self._why(previous_load, load, old_slowdown, members)
        reason = (f"better ensemble fits: {reason}; validation ROC-AUC {self.current.objective:.4f} -> "
                  f"{best.objective:.4f}, held {dwell_s:g} s")
        self._shed_from = None
        return self._switch(best, load, reason)

    def dwell_s(self, members: Sequence[str]) -> float:
        """How long an upgrade to ``members`` must stay the best before it is made: ``dwell_s``, doubled for each
        time after the first that the same members were shed (at most 8x), so a plan that keeps failing comes
        back ever more slowly instead of flapping."""
        sheds = self._sheds.get(frozenset(members), 0)
        return self.config.dwell_s * 2.0 ** min(max(sheds - 1, 0), 3)

    def _unsearched(self, load: Load) -> Selection | None:
        """Between searches (at most one per ``search_interval_s``, and every new measure is a new search key):
        of the pending upgrade and the plan in force before the last shed, the better one that the model as it
        stands now predicts within ``budget * (1 - margin)``; a pending upgrade that no longer fits is dropped.
        One prediction, no search: a contention or publication cost that wobbles between two steps must not keep
        an upgrade that a search already found from ever being confirmed, nor a plan shed for a start-up
        transient away."""
        assert self.table is not None
        fits = []
        for members in (self._pending.members if self._pending is not None else None, self._shed_from):
            if members:
                p99 = self.plan_p99(members, load)
                if p99 <= self.target_ms:
                    fits.append(Selection(tuple(members), self.table.objective(members), p99, "kept", 0))
        if not fits:
            self._pending = None
            return None
        return max(fits, key=lambda s: s.objective)

    def shed(self, members: Sequence[str], load: Load) -> Selection:
        """The best way back under the budget without a search: of the plan's own members' subsets (the
        cheapest-first prefixes of a plan of more than :data:`SHED_SUBSETS_UP_TO` members) and of every candidate
        alone, the best on validation predicted within ``budget * (1 - margin)``; else a lone model about as fast
        as the fastest (:meth:`_fastest`). Tried best first, so a shed costs a few predictions (at most 80 or
        so, about 1 ms each at 1,000 beds). Keeping merely the cheapest members could keep a two-lead model of
        validation ROC-AUC 0.73 alone, which is how the bench served one for 80 s at 1,000 beds (its pair with
        a one-lead model scores 0.993). A pinned plan is never shed (deadline drops are all it has)."""
        assert self.table is not None
        if self.config.pinned:
            return self.choose(load)  # the pinned selection, never searched
        kept = self._cheapest_first(members)
        if len(kept) <= SHED_SUBSETS_UP_TO:
            subsets = [c for k in range(1, len(kept)) for c in itertools.combinations(kept, k)]
        else:
            subsets = [tuple(kept[:k]) for k in range(1, len(kept))]
        options = list(dict.fromkeys([*subsets, *((m,) for m in self.candidate_ids)]))
        options.sort(key=lambda s: (-table_objective(self.table, s), self.latency.models_ms(s, 64), s))
        for option in options:
            p99 = self.plan_p99(option, load)
            if p99 <= self.target_ms:
                return Selection(option, self.table.objective(option), p99, "shed", len(members))
        return self._fastest(load)

    def _fastest(self, load: Load) -> Selection:
        """What is served when nothing fits: a lone model about as fast as the fastest, the best of those on
        validation (``method="cheapest"``). About as fast: a predicted p99 within ``change_ratio`` of the fastest
        one's (differences the planner treats as noise elsewhere) and a busy share within
        :data:`FALLBACK_BUSY_BAND` of the least busy one's. The RR models cost all but the same (feature
        extraction is most of their work), so the fastest by a hair must not win over a far better one: at
        1,000 beds a two-lead CNN of validation ROC-AUC 0.73 was served for 80 s that way, beside ``rr-af``'s
        0.97 predicted 3 % busier (measured)."""
        assert self.table is not None
        predicted = {m: self.predict((m,), load) for m in self.candidate_ids}
        fastest = min(predicted, key=lambda m: (predicted[m].p99_ms, predicted[m].utilisation, m))
        least_busy = min(p.utilisation for p in predicted.values())
        near = [m for m, p in predicted.items() if m == fastest or (
            p.p99_ms <= predicted[fastest].p99_ms * self.config.change_ratio
            and p.utilisation <= least_busy + FALLBACK_BUSY_BAND)]
        chosen = max(near, key=lambda m: (table_objective(self.table, (m,)), m))
        return Selection((chosen,), self.table.objective((chosen,)), predicted[chosen].p99_ms, "cheapest",
                         len(predicted))

    def _cheapest_first(self, members: Sequence[str]) -> list[str]:
        """``members`` by their cost at batch 64 (the plan's execution order, and the order shedding keeps)."""
        return sorted(members, key=lambda m: (self.latency.models_ms([m], 64), m))

    def _switch(self, selection: Selection, load: Load, reason: str) -> ServingPlan:
        self.changes += 1
        self._pending = None
        self.load = load
        self.current = self.build(selection, load, reason)
        return self.current

    def _why(self, before: Load, after: Load, old_slowdown: Mapping[str, float], members: Sequence[str]) -> str:
        parts = []
        if after.beds != before.beds:
            parts.append(f"beds {before.beds} -> {after.beds}")
        if after.phases != before.phases:
            parts.append(f"due in {after.phases} of {after.ticks_per_hop} ticks per hop (was {before.phases})")
        if (after.spread_s, after.bunch_s) != (before.spread_s, before.bunch_s):
            parts.append(f"a tick's chunks arrive over {after.spread_s:g} s, {after.bunch_s * 1000:.0f} ms apart "
                         f"(was {before.spread_s:g} s, {before.bunch_s * 1000:.0f} ms)")
        if abs(self._contention - self._old_contention) > 1e-9:
            parts.append(f"CPU work runs {self._contention:.2f}x its idle cost (was {self._old_contention:.2f}x)")
        upstream = self._upstream_figures(self._transport)
        if upstream != self._old_upstream:
            parts.append("windows reach the worker in {:.0f}/{:.0f} ms p50/top (was {:.0f}/{:.0f})".format(
                *upstream, *self._old_upstream))
        if self._deliver_ms != self._old_deliver_ms:
            old_ms = self.latency.costs.deliver_ms if self._old_deliver_ms is None else self._old_deliver_ms
            parts.append(f"a score takes {self._deliver_ms:.2f} ms to publish (was {old_ms:.2f})")
        if self._chunk_ms != self._old_chunk_ms:
            old_ms = self.latency.costs.chunk_ms if self._old_chunk_ms is None else self._old_chunk_ms
            parts.append(f"a chunk takes {self._chunk_ms:.2f} ms to decode (was {old_ms:.2f})")
        if self._jitter != self._old_jitter:
            parts.append(f"a batch runs up to {self._jitter[-1]:.1f}x its mean time (was {self._old_jitter[-1]:.1f}x)")
        for m in members:
            new, old = self._slowdown.get(m, 1.0), old_slowdown.get(m, 1.0)
            if abs(new - old) > 1e-9:
                parts.append(f"{m} runs {new:.2f}x its profile (was {old:.2f}x)")
        return ", ".join(parts) or "load unchanged"


    def close(self) -> None:
        """Stop the search process, if one was started (a search in flight is dropped)."""
        self._inflight = None
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None


class SearchProcess:
    """:func:`ensemble.selector.select` in a child process that holds the validation table.

    A search is seconds of pure Python (thousands of latency predictions); in the worker's process it takes the
    GIL from the executor thread, whose windows then wait (1-s latency spikes at 64 beds, measured). In a child
    process it costs the same CPU but no GIL. The child is spawned (not forked: the worker has threads), gets
    the table once and the latency model (as observed at the time) with each search, and dies with its parent.
    """

    def __init__(self, candidate_ids: Sequence[str], table: ValidationTable, max_members: int | None) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_search,
                                         initargs=(list(candidate_ids), table, max_members))

    def submit(self, load: Load, model: LatencyModel, target_ms: float,
               max_utilisation: float) -> Future[Selection | None]:
        """The search, started: its result is a :class:`Selection`, or None when nothing fits."""
        return self._pool.submit(_search, load, model, target_ms, max_utilisation)

    def select(self, load: Load, model: LatencyModel, target_ms: float, max_utilisation: float) -> Selection:
        """The search's :class:`Selection` with ``model`` (the planner's, as observed now); raises
        :class:`NoFeasibleEnsemble` as ``select`` does."""
        chosen = self._pool.submit(_search, load, model, target_ms, max_utilisation).result()
        if chosen is None:
            raise NoFeasibleEnsemble(f"no candidate fits {target_ms:.0f} ms")
        return chosen

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_SEARCH: dict[str, object] = {}


def _init_search(candidate_ids: list[str], table: ValidationTable, max_members: int | None) -> None:
    from ensemble.feature_process import die_with_parent

    die_with_parent()
    with contextlib.suppress(OSError):  # a search is background work: the worker's threads, the broker and the
        os.nice(10)  # API come first on a small machine (a search beside them made one hop's p99 4x)
    _SEARCH.update(ids=candidate_ids, table=table, max_members=max_members)


def _search(load: Load, model: LatencyModel, target_ms: float, max_utilisation: float) -> Selection | None:
    table = _SEARCH["table"]
    assert isinstance(table, ValidationTable)

    def p99(members: tuple[str, ...]) -> float:
        return headroom_p99(model, members, load, max_utilisation)

    try:
        return select(_SEARCH["ids"], table.objective, p99, target_ms,  # type: ignore[arg-type]
                      max_members=_SEARCH["max_members"])  # type: ignore[arg-type]
    except NoFeasibleEnsemble:
        return None


def headroom_p99(model: LatencyModel, members: Sequence[str], load: Load, max_utilisation: float) -> float:
    """``model``'s predicted p99 of ``members`` at ``load``; infinite when they would keep the executor busy
    more than ``max_utilisation`` of the time (:attr:`PlannerConfig.max_utilisation`). Never decreases when a
    member is added (the utilisation does not), as the selector's latency must not."""
    prediction = model.predict(members, load)
    return prediction.p99_ms if prediction.utilisation <= max_utilisation else math.inf


def table_objective(table: ValidationTable | None, members: Sequence[str]) -> float:
    """Validation objective of ``members``; -1 (ranks last) where there is no table or it is not a number."""
    value = table.objective(members) if table is not None else math.nan
    return value if math.isfinite(value) else -1.0


def _ms(value: float) -> str:
    return "unbounded (the executor cannot keep up)" if not math.isfinite(value) else f"{value:.0f} ms"
