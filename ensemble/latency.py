"""Predicted end-to-end latency of an ensemble under a load, from per-model batch profiles.

What is modelled is what the worker does (``ingest.worker`` + :class:`ensemble.executor.BatchExecutor`):

* every ``chunk_s`` each bed sends one chunk; the event loop decodes and windows them one after another
  (``chunk_ms`` each). Chunks spread over the tick (``spread_s``) arrive in bunches ``bunch_s`` apart (a
  gateway's send slots, a fetch's worth): a bunch's windows reach the executor together once the bunch is
  decoded, except its first, which is queued as soon as its own chunk is, so an idle executor runs it alone
  and the rest of the bunch waits for that batch (measured at 64 beds: 80 of 95 two-window bunches ran so).
  Without bunches, the windows reach it spread over the time it takes to work through the tick's chunks;
* the executor is greedy: when idle, it takes everything queued (at most ``max_batch``) and runs one batch:
  feature extraction and the quality gate, stacked over the batch (``feature_fixed_ms`` per batch plus
  ``feature_ms`` per window), then every member once on the whole batch (the member's measured profile
  ``ms(batch)``, interpolated between profiled batch sizes), plus a fixed ``batch_overhead_ms``;
* the event loop then publishes the batch's scores one by one (``deliver_ms`` each);
* the rest of the trip is the :class:`Transport`, outside the executor and independent of the ensemble:
  **upstream**, from the acquisition of a window's last sample to the window queued for the executor (the
  source's send slot, the broker, the worker's fetch wait, decoding), which the worker measures on every
  window and hands over as quantiles; **downstream**, from publication to the dashboard, a fixed part plus
  the API consumer's fetch wait (uniform: a score waits for the fetch in flight to return; a score published
  within one fetch wait of the previous batch's waits at least for the rest of the fetch that returned
  those, so this part is added per window, with the executor's, before the rest).

A window's latency is counted from the acquisition of its last sample (the tick time) to its score at the
dashboard, as ``holmes bench`` measures it. Its executor part is the wait for its batch to start plus that
batch's time; a batch's time varies around its mean by the measured ``jitter`` (the wait, a sum over many
batches, is taken at its mean). The executor part with its fetch wait and the rest of the transport are
independent, so their distributions are added (a convolution of quantile grids). Beds' windows fall due
``phases`` ticks apart per hop (1 = every bed at the same tick, the worst case; ``hop_s / chunk_s`` = spread
evenly, as monitors that were switched on at different moments are). Ticks are simulated batch by batch (not
window by window), for ``2 * (hop_s / chunk_s)`` ticks so a backlog that one tick leaves to the next is
counted; a load the executor cannot keep up with (busy time per hop above the hop) is reported as unstable,
with infinite p99.

The costs are measured, not guessed: model profiles come from the registry (``card.latency_ms``, measured on
the serving device), the feature costs are timed at worker start on real-shaped windows, alone and in a
batch (:func:`measure_feature_costs`), and the worker keeps comparing measured batch times with predicted ones
(``slowdown``, ``contention``, ``jitter``) and measures its per-chunk cost and its upstream, which
re-planning uses.
"""

from __future__ import annotations

import bisect
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ensemble.errors import EnsembleError

__all__ = ["PROFILE_SCALE_BATCH", "BatchProfile", "Costs", "LatencyModel", "LatencyPrediction", "Load", "Transport",
           "ecg_like_window", "measure_feature_costs", "measure_feature_ms"]


@dataclass(frozen=True, slots=True)
class Load:
    """The load a worker serves.

    Attributes
    ----------
    beds : int
        Beds streaming to this worker.
    hop_s : float
        Seconds between two windows of one bed.
    chunk_s : float
        Seconds of signal per chunk (one chunk per bed per tick).
    phases : int
        Distinct ticks per hop at which beds' windows fall due: 1 = all at once (worst case),
        ``hop_s / chunk_s`` = spread evenly.
    spread_s : float
        Seconds over which one tick's windows reach the worker because the beds' clocks are not in step
        within the tick (0 = all chunks sent at the tick; ``chunk_s`` = spread over the whole tick).
    bunch_s : float
        Within that spread, windows reach the worker in bunches this many seconds apart (0 = one by one): a
        gateway forwards its monitors' chunks in send slots, a fetch returns what the broker holds. A bunch is
        decoded in one go and the executor takes it as one batch.
    """

    beds: int
    hop_s: float = 5.0
    chunk_s: float = 1.0
    phases: int = 1
    spread_s: float = 0.0
    bunch_s: float = 0.0

    def __post_init__(self) -> None:
        if self.beds < 0 or self.hop_s <= 0 or self.chunk_s <= 0 or self.phases < 1 or not self.spread_s >= 0 or (
                not self.bunch_s >= 0):
            raise EnsembleError(f"invalid load {self}")

    @property
    def windows_per_s(self) -> float:
        return self.beds / self.hop_s

    @property
    def ticks_per_hop(self) -> int:
        return max(1, round(self.hop_s / self.chunk_s))

    def due(self, tick: int) -> int:
        """Windows falling due at ``tick`` (ticks count from 0; ``phases`` groups take turns)."""
        phases = min(self.phases, self.ticks_per_hop)
        if tick % self.ticks_per_hop >= phases:
            return 0
        group = tick % self.ticks_per_hop
        return self.beds // phases + (1 if group < self.beds % phases else 0)


@dataclass(frozen=True, slots=True)
class Costs:
    """Per-step costs in ms (see the module docstring); the defaults were measured on the 2-core CI machine."""

    feature_ms: float = 1.4
    chunk_ms: float = 0.12
    #: per published score, idle: 0.7-0.9 ms wall at the 1.75-1.9x contention measured beside a 256-bed aligned
    #: load on the 2-core machine (the worker measures its own, `BatchExecutor.deliver_ms`)
    deliver_ms: float = 0.4
    batch_overhead_ms: float = 0.3
    max_batch: int = 256
    #: the part of a batch's feature extraction that does not grow with its size (stacked array work)
    feature_fixed_ms: float = 0.0

    def features_ms(self, batch: int) -> float:
        """Feature extraction of one batch of ``batch`` windows on an idle machine."""
        return self.feature_fixed_ms + batch * self.feature_ms

    def __post_init__(self) -> None:
        values = (self.feature_ms, self.chunk_ms, self.deliver_ms, self.batch_overhead_ms, self.feature_fixed_ms)
        if not all(math.isfinite(v) and v >= 0 for v in values) or self.max_batch < 1:
            raise EnsembleError(f"invalid costs {self}")


@dataclass(frozen=True, slots=True)
class Transport:
    """A window's time outside the executor, ms (see the module docstring).

    Attributes
    ----------
    upstream_ms : tuple of float
        Equal-probability quantiles (ascending) of the time from the acquisition of a window's last sample to
        the window queued for the executor, as the worker measures it (:meth:`measured`); one value = fixed.
    downstream_ms : float
        Fixed part of the trip from publication to the dashboard (broker, API, WebSocket).
    downstream_wait_ms : float
        Plus a uniform 0..this: the wait for the API consumer's fetch in flight (half of
        ``HOLMES_API_FETCH_MAX_WAIT_MS`` with the embedded broker, see ``holmes.serving.build_planner``).
    """

    upstream_ms: tuple[float, ...] = (40.0,)
    downstream_ms: float = 5.0
    downstream_wait_ms: float = 0.0

    def __post_init__(self) -> None:
        values = (*self.upstream_ms, self.downstream_ms, self.downstream_wait_ms)
        if not self.upstream_ms or not all(math.isfinite(v) and v >= 0 for v in values) or list(
                self.upstream_ms) != sorted(self.upstream_ms):
            raise EnsembleError(f"invalid transport {self}")

    @classmethod
    def measured(cls, samples_ms: Sequence[float], downstream_ms: float = 5.0, downstream_wait_ms: float = 0.0,
                 levels: int = 32, step_ms: float = 1.0) -> Transport:
        """From measured upstream times: ``levels`` mid-point quantiles, rounded to ``step_ms`` (so that
        loads measured a moment apart plan the same)."""
        if len(samples_ms) == 0:
            raise EnsembleError("no upstream times measured")
        q = np.quantile(np.maximum(np.asarray(samples_ms, dtype=float), 0.0), (np.arange(levels) + 0.5) / levels)
        return cls(tuple(float(v) for v in np.round(q / step_ms) * step_ms), downstream_ms, downstream_wait_ms)

    @property
    def downstream_mean_ms(self) -> float:
        return self.downstream_ms + self.downstream_wait_ms / 2


#: quantile grid of the convolutions (equal-probability mid-points): fine enough for a p99, cheap enough
#: for the thousands of predictions of one search
_LEVELS = 64


#: equal-probability levels of the API consumer's fetch wait (uniform), per window
_FETCH_LEVELS = (np.arange(8) + 0.5) / 8


@functools.lru_cache(maxsize=256)
def _upstream_quantiles(transport: Transport) -> np.ndarray:
    """The transport without the fetch wait: upstream plus the fixed downstream part (read-only)."""
    out = np.asarray(transport.upstream_ms, dtype=float) + transport.downstream_ms
    out.setflags(write=False)
    return out


def _grid(values: np.ndarray, levels: int = _LEVELS) -> np.ndarray:
    """``levels`` equal-probability mid-point quantiles of ``values``."""
    return np.quantile(values, (np.arange(levels) + 0.5) / levels)


def _weighted_grid(values: np.ndarray, weights: np.ndarray, levels: int = _LEVELS) -> np.ndarray:
    """``levels`` equal-probability mid-point quantiles of ``values`` weighted by ``weights`` (inverted CDF)."""
    order = np.argsort(values, kind="stable")
    cdf = np.cumsum(weights[order])
    at = np.searchsorted(cdf, (np.arange(levels) + 0.5) / levels * cdf[-1])
    return values[order][np.minimum(at, len(values) - 1)]


PROFILE_SCALE_BATCH = 64
"""The larger batch size a profile's scale is measured at (:meth:`BatchProfile.scaled`; the worker times its
candidates there at start, the size busy loads run at)."""


class BatchProfile:
    """A model's ms per call as a function of batch size: piecewise linear through the profiled sizes,
    extrapolated past the largest with its per-window cost."""

    def __init__(self, points: Mapping[int, float]) -> None:
        items = sorted((int(b), float(ms)) for b, ms in points.items())
        if not items or any(b < 1 or not math.isfinite(ms) or ms < 0 for b, ms in items):
            raise EnsembleError(f"a batch profile needs finite ms for batch sizes >= 1, got {dict(points)}")
        self.sizes = np.array([b for b, _ in items], dtype=float)
        self.ms = np.array([ms for _, ms in items], dtype=float)
        self._tables: dict[int, np.ndarray] = {}

    @classmethod
    def from_card(cls, latency_ms: Mapping[int | str, float]) -> BatchProfile:
        return cls({int(b): float(ms) for b, ms in latency_ms.items()})

    def scaled(self, small: float, large: float, large_batch: int = PROFILE_SCALE_BATCH) -> BatchProfile:
        """This profile as measured on another machine (or day): ``small`` times it at batch 1, ``large`` times
        it from ``large_batch`` up, the factor in between interpolated in log batch size. The worker times
        its candidates at both sizes when it starts (``holmes.serving.measure_profile_scales``): the cards'
        profiles were measured when the models were registered, and one machine ran them 1.1-3.3x slower
        on another day (idle, one thread), by a different factor per model and batch size."""
        if not (math.isfinite(small) and math.isfinite(large) and small > 0 and large > 0 and large_batch > 1):
            raise EnsembleError(f"invalid profile scale {small}, {large} (batch {large_batch})")
        where = np.clip(np.log(self.sizes) / math.log(large_batch), 0.0, 1.0)
        factor = small * (large / small) ** where
        return BatchProfile(dict(zip(self.sizes.astype(int).tolist(), (self.ms * factor).tolist(), strict=True)))

    def __call__(self, batch: int) -> float:
        if batch <= 0:
            return 0.0
        if batch <= self.sizes[0]:
            return float(self.ms[0])
        if batch >= self.sizes[-1]:
            per_window = self.ms[-1] / self.sizes[-1]
            return float(self.ms[-1] + (batch - self.sizes[-1]) * per_window)
        return float(np.interp(batch, self.sizes, self.ms))

    def table(self, max_batch: int) -> np.ndarray:
        """``self(b)`` for every batch size ``b`` in ``0..max_batch`` (read-only; index = batch size), computed
        once: the latency model looks batch costs up thousands of times per search."""
        table = self._tables.get(max_batch)
        if table is None:
            b = np.arange(max_batch + 1, dtype=float)
            table = np.interp(b, self.sizes, self.ms)  # ms[0] below the smallest profiled size
            above = b > self.sizes[-1]
            table[above] = self.ms[-1] + (b[above] - self.sizes[-1]) * (self.ms[-1] / self.sizes[-1])
            table[0] = 0.0
            table.setflags(write=False)
            self._tables[max_batch] = table
        return table


@dataclass(frozen=True, slots=True)
class LatencyPrediction:
    """Predicted end-to-end latency (ms) of one ensemble at one load."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    utilisation: float
    batches_per_tick: float
    stable: bool

    def as_dict(self) -> dict[str, float | bool]:
        return {
            "p50_ms": round(self.p50_ms, 1), "p99_ms": round(self.p99_ms, 1), "max_ms": round(self.max_ms, 1),
            "utilisation": round(self.utilisation, 3), "batches_per_tick": round(self.batches_per_tick, 2),
            "stable": self.stable,
        }


_UNSTABLE = LatencyPrediction(math.inf, math.inf, math.inf, math.inf, math.inf, False)


@dataclass(slots=True)
class LatencyModel:
    """Predicts p50/p99 end-to-end latency of any ensemble (see the module docstring).

    Parameters
    ----------
    profiles : mapping of str to BatchProfile
        Model id (``name@version``) to its batch profile.
    costs : Costs
        The per-window, per-chunk and fixed costs.
    slowdown : mapping of str to float
        Measured / profiled time per model beyond the contention (1 = as profiled); a model running slower
        than its profile (thermal throttling, a new driver, a bad build) is predicted slower from then on.
    contention : float
        Measured / profiled time of all CPU work in the worker (features, models, decoding, publishing):
        the profiles were measured on an idle machine; the worker shares its cores with the broker, the API
        and the simulator. The worker measures it on feature extraction (:class:`ensemble.planner.Slowdown`).
    transport : Transport
        The time outside the executor, upstream (measured by the worker) and downstream.
    jitter : tuple of float
        Equal-probability quantiles (mean about 1) of how much one batch's time varies around its mean
        (:meth:`ensemble.planner.Slowdown.jitter`); each window's own batch time is scaled by them, its wait
        for earlier batches is not. ``(1.0,)`` = none.
    profile_scales : mapping of str to (float, float)
        Per model, the ``(batch 1, batch 64)`` factors its profile in ``profiles`` was scaled by from its card
        (:meth:`BatchProfile.scaled`: measured here when the worker started); empty = the cards' profiles.
    """

    profiles: dict[str, BatchProfile]
    costs: Costs = field(default_factory=Costs)
    slowdown: dict[str, float] = field(default_factory=dict)
    contention: float = 1.0
    transport: Transport = field(default_factory=Transport)
    jitter: tuple[float, ...] = (1.0,)
    profile_scales: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def from_models(cls, models: Sequence[object], costs: Costs | None = None) -> LatencyModel:
        """From served models (anything with ``model_id`` and ``card.latency_ms``)."""
        profiles = {}
        for m in models:
            latency = getattr(getattr(m, "card", None), "latency_ms", None)
            model_id = getattr(m, "model_id", None)
            if not latency or not isinstance(model_id, str):
                raise EnsembleError(f"{model_id or m!r} has no latency profile; profile it before serving")
            profiles[model_id] = BatchProfile.from_card(latency)
        return cls(profiles, costs or Costs())

    def with_costs(self, **changes: float) -> LatencyModel:
        return replace(self, costs=replace(self.costs, **changes), slowdown=dict(self.slowdown))

    def rescaled(self, scales: Mapping[str, tuple[float, float]]) -> LatencyModel:
        """The model with each listed profile scaled from its card by ``(batch 1, batch 64)`` factors
        (:meth:`BatchProfile.scaled`); profiles not listed stay as they are."""
        profiles = dict(self.profiles)
        for model_id, (small, large) in scales.items():
            if model_id in profiles:
                profiles[model_id] = profiles[model_id].scaled(small, large)
        return replace(self, profiles=profiles, slowdown=dict(self.slowdown),
                       profile_scales={**self.profile_scales, **{m: (float(a), float(b)) for m, (a, b) in
                                                                 scales.items() if m in profiles}})

    def models_ms(self, members: Sequence[str], batch: int) -> float:
        """Inference time of one batch through every member, ms."""
        try:
            return self.contention * sum(self.profiles[m](batch) * self.slowdown.get(m, 1.0) for m in members)
        except KeyError as exc:
            raise EnsembleError(f"no latency profile for {exc.args[0]}") from exc

    def batch_costs(self, members: Sequence[str]) -> list[float]:
        """Executor time of one batch of every size ``0..max_batch`` (index = batch size): features for every
        window, every member, the fixed overhead."""
        c = self.costs
        n = c.max_batch
        models = np.zeros(n + 1)
        try:
            for m in members:
                models = models + self.profiles[m].table(n) * self.slowdown.get(m, 1.0)
        except KeyError as exc:
            raise EnsembleError(f"no latency profile for {exc.args[0]}") from exc
        sizes = np.arange(n + 1)
        total = self.contention * (c.batch_overhead_ms + (c.feature_fixed_ms + sizes * c.feature_ms))
        return (total + self.contention * models).tolist()

    def predict(self, members: Sequence[str], load: Load) -> LatencyPrediction:
        """Predicted latency distribution of ``members`` at ``load`` (see the module docstring)."""
        c = self.costs
        cost = self.batch_costs(members)
        if load.beds == 0:
            return self._with_transport(np.zeros(1), np.array([cost[1] + c.deliver_ms * self.contention]),
                                        np.full(1, math.inf), 0.0, 0.0)
        tick_ms = load.chunk_s * 1000.0
        per_hop = load.ticks_per_hop
        busy_per_hop = sum(self._busy_for(cost, load.due(t)) for t in range(per_hop))
        utilisation = busy_per_hop / (per_hop * tick_ms)
        if utilisation >= 1.0:
            return replace(_UNSTABLE, utilisation=utilisation)
        # When the windows reach the executor: beds whose clocks are spread over the tick are acquired
        # spread_ms apart and their chunks decoded as they come; chunks sent together queue on the event loop,
        # which decodes every bed's chunk of the tick (decode_ms) before the last window is in. The time from
        # acquisition to the queue is the transport's upstream part (measured); what is replayed here is the
        # executor's part, queued -> published, whose batching depends on how the arrivals bunch.
        spread_ms = min(load.spread_s, load.chunk_s) * 1000.0
        bunch_ms = min(load.bunch_s * 1000.0, spread_ms)
        bunch_decode_ms = load.beds * bunch_ms / spread_ms * c.chunk_ms * self.contention if bunch_ms > 0 else 0.0
        decode_ms = load.beds * c.chunk_ms * self.contention
        deliver_ms = c.deliver_ms * self.contention
        free_at = 0.0
        waits: list[np.ndarray] = []  # arrival -> its batch starts
        services: list[np.ndarray] = []  # its batch's start -> its score published
        gaps: list[np.ndarray] = []  # the previous batch's last score published -> its score published
        last_out = -math.inf
        batches = 0
        for tick in range(2 * per_hop):
            n = load.due(tick)
            if n == 0:
                continue
            frac = np.arange(1, n + 1) / n
            if bunch_ms > 0:  # a bunch's windows are in once every chunk of it (not only those ending a
                # window) is decoded, but its first window as soon as its own chunk is: an idle executor takes
                # that one alone and the rest of the bunch waits for it (64 beds: 80 of 95 two-window bunches)
                slot = np.ceil(spread_ms * frac / bunch_ms - 1e-9)
                _, first, size = np.unique(slot, return_index=True, return_counts=True)
                arrival = tick * tick_ms + np.repeat(slot[first] * bunch_ms, size) + bunch_decode_ms
                arrival[first] -= bunch_decode_ms * size / (size + 1)
                arrival.sort()
            else:
                arrival = (tick * tick_ms + spread_ms * frac + max(decode_ms - spread_ms, 0.0) * frac
                           + c.chunk_ms * self.contention)
            arrivals = arrival.tolist()
            # the greedy executor, batch by batch, in plain floats (a search predicts thousands of subsets)
            firsts: list[int] = []
            starts: list[float] = []
            before: list[float] = []  # the previous batch's last publication
            i = 0
            while i < n:
                start = max(free_at, arrivals[i])
                b = max(1, min(bisect.bisect_right(arrivals, start) - i, c.max_batch))
                done = start + cost[b]
                firsts.append(i)
                starts.append(start)
                before.append(last_out)
                free_at = last_out = done + deliver_ms * b  # the batch's scores go out one by one
                i += b
            sizes = np.diff(np.append(firsts, n))
            rank = np.arange(1, n + 1) - np.repeat(firsts, sizes)  # 1..b within each batch
            start_of = np.repeat(starts, sizes)
            waits.append(start_of - arrival)
            service = np.repeat(np.asarray(cost)[sizes], sizes) + deliver_ms * rank
            services.append(service)
            gaps.append(start_of + service - np.repeat(before, sizes))
            batches += len(firsts)
        wait, service, gap = np.concatenate(waits), np.concatenate(services), np.concatenate(gaps)
        # the second hop is the steady state (a backlog from the first one is counted in it)
        half = len(wait) // 2
        return self._with_transport(wait[half:], service[half:], gap[half:], utilisation, batches / (2 * per_hop))

    def _with_transport(self, wait_ms: np.ndarray, service_ms: np.ndarray, gap_ms: np.ndarray, utilisation: float,
                        batches_per_tick: float) -> LatencyPrediction:
        """The prediction from the executor's part of each window (the wait for its batch, then the batch's
        service) plus the transport. A batch's service varies with ``jitter``; the wait, a sum of many batches'
        services, is taken at its mean.

        The API consumer's fetch wait (``downstream_wait_ms``, uniform) is not independent of the executor: a
        score published less than one fetch wait after the previous batch's scores finds the fetch that
        returned those still held, so it waits at least the rest of it (``gap_ms``: the time since the
        previous batch's last publication). Those are the windows that also queued behind that batch: the
        bench measured the two correlated (0.46 at 64 beds; a score 15-20 ms behind the previous batch took
        20 ms p50 from the worker to the API, one 50-100 ms behind 9 ms). Each window's executor part and its
        fetch wait are added first, then the rest of the transport (upstream, the fixed downstream part)."""
        t = self.transport
        jitter = np.asarray(self.jitter)
        executor_ms = wait_ms[:, None] + service_ms[:, None] * jitter[None, :] if self.jitter != (1.0,) else (
            (wait_ms + service_ms)[:, None])
        top = t.downstream_wait_ms
        if len(t.upstream_ms) == 1 and top == 0:  # a fixed transport: exact, and quick
            total = executor_ms.ravel() + (t.upstream_ms[0] + t.downstream_ms)
        else:
            if top > 0:  # the fetch wait: uniform over what remains of the fetch in flight, from the least
                # wait in steps of a quarter of it (windows with the same least wait are gridded together)
                least = np.round(np.clip(1.0 - gap_ms / top, 0.0, 1.0) * 4) / 4 * top
                values, weights = [], []
                for low in np.unique(least):
                    group = executor_ms[least == low].ravel()
                    grid = _grid(group, min(_LEVELS, len(group)))
                    values.append((grid[:, None] + (low + (top - low) * _FETCH_LEVELS)[None, :]).ravel())
                    weights.append(np.full(values[-1].size, len(group) / values[-1].size))
                executor_grid = _weighted_grid(np.concatenate(values), np.concatenate(weights))
            else:
                executor_grid = _grid(executor_ms.ravel())
            total = (executor_grid[:, None] + _upstream_quantiles(t)[None, :]).ravel()
        return LatencyPrediction(
            p50_ms=float(np.percentile(total, 50)),
            p99_ms=float(np.percentile(total, 99)),
            max_ms=float(executor_ms.max() + t.upstream_ms[-1] + t.downstream_ms + t.downstream_wait_ms),
            utilisation=utilisation,
            batches_per_tick=batches_per_tick,
            stable=True,
        )

    def _busy_for(self, cost: Sequence[float], n: int) -> float:
        """Busy ms for ``n`` windows of one tick in full batches (``cost``: :meth:`batch_costs`)."""
        if n == 0:
            return 0.0
        full, rest = divmod(n, self.costs.max_batch)
        busy = full * cost[self.costs.max_batch] + (cost[rest] if rest else 0.0)
        return busy + n * self.costs.deliver_ms * self.contention


def ecg_like_window(seconds: float = 10.0, leads: int = 2, fs_hz: float = 250.0, seed: int = 0) -> np.ndarray:
    """An ECG-shaped window (beats every 0.8 s on noise), float32 ``(leads, n)``: what feature costs are timed on."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs_hz)
    t = np.arange(n) / fs_hz
    beat = np.exp(-0.5 * ((t % 0.8) - 0.4) ** 2 / 0.012**2)
    return (beat[None, :] + 0.03 * rng.standard_normal((leads, n))).astype(np.float32)


def measure_feature_ms(repeats: int = 20, seconds: float = 10.0, leads: int = 2, fs_hz: float = 250.0,
                       batch: int = 1, extract: Callable[[Sequence[np.ndarray], float], object] | None = None) -> float:
    """Median ms per window of :func:`features.extract_batch` (or ``extract``, the scorer's) on ``batch``
    ECG-shaped windows (beats every 0.8 s on noise)."""
    import features

    run = extract or features.extract_batch
    windows = [ecg_like_window(seconds, leads, fs_hz, seed) for seed in range(batch)]
    run(windows, fs_hz)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(windows, fs_hz)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0) / batch


def measure_feature_costs(
    batch: int = 32, repeats: int = 10, extract: Callable[[Sequence[np.ndarray], float], object] | None = None,
) -> tuple[float, float]:
    """``(feature_fixed_ms, feature_ms)`` for :class:`Costs`: the line through the measured cost of one window
    alone and of ``batch`` windows stacked (per window, the fixed part never below 0), through ``extract`` (the
    scorer's; default :func:`features.extract_batch`)."""
    one = measure_feature_ms(repeats=repeats, extract=extract)
    many = measure_feature_ms(repeats=max(3, repeats // 4), batch=batch, extract=extract) * batch
    per_window = max((many - one) / (batch - 1), 0.0)
    return max(one - per_window, 0.0), per_window if per_window > 0 else one
