"""Prometheus metrics of the api (its own registry per app) and the live figures of the ensemble page."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from api.asgi import StatusRecorder
from api.db import WriteOutcome
from api.schemas import LatencyPublic, PlanPublic, ServedModelPublic, score_status
from ingest.schemas import ScoreRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: End-to-end latency buckets (s): the 1-s deadline of the benchmark sits in the middle.
LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

#: (name, help, kind, value) of the figures read at scrape time from the consumer, hub and dead-letter monitor.
Sample = tuple[str, str, str, float]


class _Live(Collector):
    """Reads counters kept elsewhere (consumer stats, WebSocket hub) when Prometheus scrapes."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], Iterable[Sample]]] = []

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            for name, doc, kind, value in source():
                family = CounterMetricFamily(name, doc) if kind == "counter" else GaugeMetricFamily(name, doc)
                family.add_metric([], value)
                yield family


class _PlanGauges(Collector):
    """Per-worker gauges of the plans in force, read from the plan monitor when Prometheus scrapes."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[PlanPublic]] = list

    def collect(self) -> Iterator[Metric]:
        plans = list(self.source())
        families = (
            ("holmes_ensemble_budget_seconds", "End-to-end latency budget of the plan in force", "budget_ms"),
            ("holmes_ensemble_predicted_p50_seconds", "Predicted end-to-end p50 of the plan in force",
             "predicted_p50_ms"),
            ("holmes_ensemble_predicted_p99_seconds", "Predicted end-to-end p99 of the plan in force",
             "predicted_p99_ms"),
        )
        for name, doc, attr in families:
            family = GaugeMetricFamily(name, doc, labels=["worker"])
            for plan in plans:
                family.add_metric([plan.worker_id], getattr(plan, attr) / 1000)
            yield family
        members = GaugeMetricFamily("holmes_ensemble_members", "Models in the plan in force", labels=["worker"])
        for plan in plans:
            members.add_metric([plan.worker_id], len(plan.members))
        yield members


#: A worker not heard from for this long leaves the queue-depth gauges (bounded series after scale-in).
WORKER_FORGET_S = 600.0
#: The most workers the queue-depth gauges track; the one heard from least recently is forgotten first.
MAX_TRACKED_WORKERS = 256
#: Worker ids longer than this are cut to it for the label (the plans table's limit).
WORKER_LABEL_CHARS = 200


@dataclass(slots=True)
class _WorkerQueue:
    depth: float
    max_depth: float
    #: ``scored_at_s`` of the record ``depth`` came from (the worker's clock): replays never move it back.
    scored_at_s: float
    #: When the api last received a score of this worker (the api's clock).
    seen_s: float


class _QueueDepthGauges(Collector):
    """Each worker's scoring-queue depth, from the ``extra["queue_depth"]`` / ``extra["worker_id"]`` of its scores.

    ``holmes_worker_queue_depth`` is the depth of the worker's newest score (by ``scored_at_s``), and
    ``holmes_worker_queue_depth_max`` the highest depth seen since the api started (or since it last forgot the
    worker). Workers silent for ``forget_after_s`` are forgotten, and at most ``max_workers`` are tracked.
    """

    def __init__(self, clock: Callable[[], float], forget_after_s: float = WORKER_FORGET_S,
                 max_workers: int = MAX_TRACKED_WORKERS) -> None:
        self.clock = clock
        self.forget_after_s = forget_after_s
        self.max_workers = max_workers
        #: Least recently heard from first.
        self._workers: OrderedDict[str, _WorkerQueue] = OrderedDict()
        # Scores arrive on the event loop, /metrics is rendered in a thread.
        self._lock = threading.Lock()

    def observe(self, records: Iterable[ScoreRecord]) -> None:
        now = self.clock()
        workers = self._workers
        with self._lock:
            for record in records:
                extra = record.extra
                worker = extra.get("worker_id")
                depth = _number(extra.get("queue_depth"))
                if depth is None or not isinstance(worker, str) or not worker:
                    continue
                worker = worker[:WORKER_LABEL_CHARS]
                seen = workers.get(worker)
                if seen is None:
                    workers[worker] = _WorkerQueue(depth, depth, record.scored_at_s, now)
                    continue
                if record.scored_at_s >= seen.scored_at_s:
                    seen.depth, seen.scored_at_s = depth, record.scored_at_s
                if depth > seen.max_depth:
                    seen.max_depth = depth
                if seen.seen_s != now:
                    seen.seen_s = now
                    workers.move_to_end(worker)
            self._forget(now)

    def _forget(self, now: float) -> None:
        workers = self._workers
        cutoff = now - self.forget_after_s
        while workers and (len(workers) > self.max_workers or next(iter(workers.values())).seen_s < cutoff):
            workers.popitem(last=False)

    def snapshot(self) -> dict[str, tuple[float, float]]:
        """``worker -> (depth, max_depth)`` of the workers tracked now."""
        with self._lock:
            self._forget(self.clock())
            return {worker: (q.depth, q.max_depth) for worker, q in self._workers.items()}

    def collect(self) -> Iterator[Metric]:
        workers = self.snapshot()
        depth = GaugeMetricFamily("holmes_worker_queue_depth",
                                  "Scoring-queue depth of the worker when it published its newest score",
                                  labels=["worker"])
        high = GaugeMetricFamily("holmes_worker_queue_depth_max",
                                 "Highest scoring-queue depth a worker reported since the api started",
                                 labels=["worker"])
        for worker, (last, top) in sorted(workers.items()):
            depth.add_metric([worker], last)
            high.add_metric([worker], top)
        yield depth
        yield high


def _percentiles(values_s: Iterable[float]) -> tuple[int, float | None, float | None, float | None, float | None]:
    """``(n, p50, p95, p99, max)`` in ms (nearest rank), ``None`` without values."""
    values = sorted(values_s)

    def pct(q: float) -> float | None:
        if not values:
            return None
        return round(values[min(len(values) - 1, math.ceil(q * len(values)) - 1)] * 1000, 1)

    return len(values), pct(0.5), pct(0.95), pct(0.99), round(values[-1] * 1000, 1) if values else None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


@dataclass(slots=True)
class _ModelSeen:
    windows: int = 0
    last_seen_s: float = 0.0
    beds: set[str] = field(default_factory=set)


class Metrics:
    """Counters and histograms of stored windows, alerts, dead letters and HTTP requests."""

    def __init__(self, throughput_window_s: float = 60.0, latency_samples: int = 2000,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.clock = clock
        self.throughput_window_s = throughput_window_s
        self.e2e_latency = Histogram(
            "holmes_score_latency_seconds",
            "End-to-end latency of a window at the api: received_at - window_end (clamped at 0)",
            buckets=LATENCY_BUCKETS_S, registry=self.registry,
        )
        self.windows = Counter("holmes_windows", "Windows stored (first copy only), by status",
                               ["status"], registry=self.registry)
        self.windows_lost = Counter("holmes_windows_lost", "Windows missing between a bed's consecutive windows",
                                    registry=self.registry)
        self.selection_changes = Counter(
            "holmes_ensemble_selection_changes",
            "Ensemble selections the workers put in force (plans stored), by reason kind: the reason's first word, "
            "'start' for a worker's first plan", ["reason"], registry=self.registry)
        self.bed_model_changes = Counter("holmes_bed_model_changes",
                                          "Times a bed's members changed between two full (not partial) scores",
                                          registry=self.registry)
        self.plan_gauges = _PlanGauges()
        self.registry.register(self.plan_gauges)
        self.dead_letters = Counter("holmes_dead_letters", "Dead letters read from the dead-letter topic, by reason",
                                    ["reason"], registry=self.registry)
        self.alert_events = Counter("holmes_alert_events", "Alert events by kind (raised, acknowledged, cleared)",
                                    ["kind"], registry=self.registry)
        self.http_latency = Histogram("holmes_http_request_duration_seconds", "HTTP request duration by route",
                                      ["method", "route", "status"], buckets=HTTP_BUCKETS_S, registry=self.registry)
        self.live = _Live()
        self.registry.register(self.live)
        self.worker_queues = _QueueDepthGauges(clock)
        self.registry.register(self.worker_queues)
        for status in ("ok", "partial", "incomplete", "unscorable"):
            self.windows.labels(status)
        for kind in ("raised", "acknowledged", "cleared"):
            self.alert_events.labels(kind)
        self.selection_changes.labels("start")
        self._recent_latency_s: deque[float] = deque(maxlen=latency_samples)
        #: The workers' own latency of each window (``extra["measured_ms"]``, acquisition to publish), seconds.
        self._recent_worker_s: deque[float] = deque(maxlen=latency_samples)
        self._throughput: deque[tuple[float, int]] = deque()
        self._models: dict[str, _ModelSeen] = {}
        self.by_status: dict[str, int] = dict.fromkeys(("ok", "partial", "incomplete", "unscorable"), 0)
        self.lost = 0
        #: Times a bed's members changed between full scores (selection changes come from the plans).
        self.model_changes = 0

    def render(self) -> bytes:
        """The exposition text for ``GET /metrics``."""
        return generate_latest(self.registry)

    def observe_workers(self, records: Iterable[ScoreRecord]) -> None:
        """Note the scoring-queue depth each received score reports for its worker (replays included)."""
        self.worker_queues.observe(records)

    def record_write(self, outcome: WriteOutcome, received_at_s: float) -> None:
        """Count what one store write inserted: statuses, latency, provenance, lost windows, alert events."""
        now = self.clock()
        for record in outcome.inserted:
            status = score_status(record.state, record.complete, record.extra)
            self.windows.labels(status).inc()
            self.by_status[status] += 1
            latency_s = max(0.0, received_at_s - record.window_end_s)
            self.e2e_latency.observe(latency_s)
            self._recent_latency_s.append(latency_s)
            worker_ms = _number(record.extra.get("measured_ms"))
            if worker_ms is not None:
                self._recent_worker_s.append(worker_ms / 1000)
            for model in record.models:
                seen = self._models.setdefault(model, _ModelSeen())
                seen.windows += 1
                seen.last_seen_s = received_at_s
                seen.beds.add(record.bed_id)
        if outcome.inserted:
            self._throughput.append((now, len(outcome.inserted)))
        if outcome.windows_lost:
            self.windows_lost.inc(outcome.windows_lost)
            self.lost += outcome.windows_lost
        if outcome.provenance_changes:
            self.bed_model_changes.inc(outcome.provenance_changes)
            self.model_changes += outcome.provenance_changes
        for change in outcome.alerts:
            self.alert_events.labels(change.event.kind).inc()

    def throughput_windows_per_s(self) -> float:
        """Windows stored per second over the last ``throughput_window_s``."""
        cutoff = self.clock() - self.throughput_window_s
        while self._throughput and self._throughput[0][0] < cutoff:
            self._throughput.popleft()
        return sum(n for _, n in self._throughput) / self.throughput_window_s

    def latency(self) -> LatencyPublic:
        """Percentiles of the recent windows and the cumulative histogram since start."""
        n, p50, p95, p99, top = _percentiles(self._recent_latency_s)
        histogram: dict[str, int] = {}
        for metric in self.e2e_latency.collect():
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    bound = sample.labels["le"]
                    key = "+Inf" if bound == "+Inf" else f"{float(bound) * 1000:g}"
                    histogram[key] = int(sample.value)
        return LatencyPublic(n=n, p50_ms=p50, p95_ms=p95, p99_ms=p99, max_ms=top, histogram=histogram)

    def worker_latency(self) -> LatencyPublic:
        """Percentiles of the workers' own latency of the recent windows (``extra["measured_ms"]``), no histogram."""
        n, p50, p95, p99, top = _percentiles(self._recent_worker_s)
        return LatencyPublic(n=n, p50_ms=p50, p95_ms=p95, p99_ms=p99, max_ms=top, histogram={})

    def served_models(self) -> list[ServedModelPublic]:
        """Models named in score provenance since start, most recently seen first."""
        out = []
        for model, seen in self._models.items():
            name, _, version = model.partition("@")
            out.append(ServedModelPublic(model=model, name=name, version=version or None, windows=seen.windows,
                                         beds=len(seen.beds), last_seen_s=seen.last_seen_s))
        return sorted(out, key=lambda m: (-m.last_seen_s, m.model))


class HttpMetricsMiddleware:
    """Times every HTTP request into ``holmes_http_request_duration_seconds`` by route template."""

    def __init__(self, app: ASGIApp, metrics: Callable[[Scope], Metrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        recorder = StatusRecorder(send)
        try:
            await self.app(scope, receive, recorder)
        finally:
            status_code = recorder.status_code
            metrics = self.metrics(scope)
            if metrics is not None:
                route = scope.get("route")
                # Unmatched paths share one label, so that scanners cannot blow up the series count.
                template = getattr(route, "path", None) or "unmatched"
                metrics.http_latency.labels(scope["method"], template, str(status_code)).observe(
                    time.perf_counter() - start
                )
