"""Prometheus metrics of the api (its own registry per app) and the live figures of the ensemble page."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from api.asgi import StatusRecorder
from api.db import WriteOutcome
from api.schemas import LatencyPublic, ServedModelPublic, score_status

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
        self.selection_changes = Counter("holmes_model_selection_changes",
                                         "Times a bed's scoring models (score provenance) changed",
                                         registry=self.registry)
        self.dead_letters = Counter("holmes_dead_letters", "Dead letters read from the dead-letter topic, by reason",
                                    ["reason"], registry=self.registry)
        self.alert_events = Counter("holmes_alert_events", "Alert events by kind (raised, acknowledged, cleared)",
                                    ["kind"], registry=self.registry)
        self.http_latency = Histogram("holmes_http_request_duration_seconds", "HTTP request duration by route",
                                      ["method", "route", "status"], buckets=HTTP_BUCKETS_S, registry=self.registry)
        self.live = _Live()
        self.registry.register(self.live)
        for status in ("ok", "partial", "incomplete", "unscorable"):
            self.windows.labels(status)
        for kind in ("raised", "acknowledged", "cleared"):
            self.alert_events.labels(kind)
        self._recent_latency_s: deque[float] = deque(maxlen=latency_samples)
        self._throughput: deque[tuple[float, int]] = deque()
        self._models: dict[str, _ModelSeen] = {}
        self.by_status: dict[str, int] = dict.fromkeys(("ok", "partial", "incomplete", "unscorable"), 0)
        self.lost = 0
        self.changes = 0

    def render(self) -> bytes:
        """The exposition text for ``GET /metrics``."""
        return generate_latest(self.registry)

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
        if outcome.selection_changes:
            self.selection_changes.inc(outcome.selection_changes)
            self.changes += outcome.selection_changes
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
        values = sorted(self._recent_latency_s)

        def pct(q: float) -> float | None:
            if not values:
                return None
            return round(values[min(len(values) - 1, math.ceil(q * len(values)) - 1)] * 1000, 1)

        histogram: dict[str, int] = {}
        for metric in self.e2e_latency.collect():
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    bound = sample.labels["le"]
                    key = "+Inf" if bound == "+Inf" else f"{float(bound) * 1000:g}"
                    histogram[key] = int(sample.value)
        return LatencyPublic(n=len(values), p50_ms=pct(0.5), p95_ms=pct(0.95), p99_ms=pct(0.99),
                             max_ms=round(values[-1] * 1000, 1) if values else None, histogram=histogram)

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
