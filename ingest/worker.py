"""The Faust worker: waveform chunks in, windows cut per bed, scores and dead letters out."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import socket
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ensemble.executor import BatchExecutor, QueueFull
from ensemble.latency import Load
from ensemble.planner import Planner, Slowdown
from ensemble.scoring import ServingPlan, Verdict, WindowScorer
from ingest.codec import MAX_MESSAGE_BYTES, decode_chunk, encode_plan, encode_score
from ingest.errors import DecodeError
from ingest.schemas import PlanRecord, ScoreRecord, WaveformChunk
from ingest.topics import Topics
from ingest.transport import HolmesApp
from ingest.windowing import ChunkOutcome, Window, Windower

log = logging.getLogger(__name__)

#: Dead letters keep the original payload up to this size (base64), so nothing is lost for inspection.
DEADLETTER_PAYLOAD_BYTES = 2 * MAX_MESSAGE_BYTES


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a worker process needs; built by the CLI from settings."""

    kafka_bootstrap: str
    topics: Topics
    app_id: str = "holmes-worker"
    window_s: float = 10.0
    hop_s: float = 5.0
    sample_rate_hz: float = 250.0
    max_reorder_chunks: int = 2
    fetch_max_wait_ms: int = 10
    max_batch: int = 256
    max_queue: int = 20_000
    stats_interval_s: float = 10.0
    ready_file: Path | None = None
    datadir: Path = field(default_factory=lambda: Path(".holmes/worker"))
    budget_ms: float = 1000.0
    exec_mode: Literal["batched", "per-request", "offline"] = "batched"
    offline_period_s: float = 30.0
    replan_interval_s: float = 1.0
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @property
    def deadline_margin_s(self) -> float:
        """Time kept after a window's deadline in the worker for the score's trip to the dashboard."""
        return 0.05 * self.budget_ms / 1000.0 + 0.03


@dataclass(slots=True)
class WorkerCounters:
    """What the worker has seen, for logs and (later) metrics."""

    chunks: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    windows: int = 0
    scores: int = 0
    unscorable: int = 0
    partial: int = 0
    shed: int = 0


class LoadTracker:
    """What the planner needs to know of the load: beds streaming and how many windows fall due per tick.

    A bed counts while it had a window within the last two hops. The phases (ticks per hop at which windows
    fall due) are ``beds / (most windows due in one tick over the last hop)``: 1 when every bed's windows
    fall due together, ``hop / chunk`` when they are spread evenly.
    """

    def __init__(self, hop_s: float) -> None:
        self.hop_s = hop_s
        self.chunk_s = 1.0
        self._last: dict[str, float] = {}
        self._ticks: deque[tuple[float, int]] = deque()
        self._tick_key: float | None = None
        self._tick_count = 0

    def window(self, bed_id: str, end_s: float, now_s: float) -> None:
        self._last[bed_id] = now_s
        key = math.floor(end_s / self.chunk_s)
        if key != self._tick_key:
            if self._tick_key is not None:
                self._ticks.append((now_s, self._tick_count))
            self._tick_key, self._tick_count = key, 0
        self._tick_count += 1

    def load(self, now_s: float) -> Load:
        horizon = now_s - 2 * self.hop_s
        for bed in [b for b, t in self._last.items() if t < horizon]:
            del self._last[bed]
        while self._ticks and self._ticks[0][0] < now_s - self.hop_s:
            self._ticks.popleft()
        beds = len(self._last)
        most = max([c for _, c in self._ticks] + [self._tick_count, 1])
        ticks = max(1, round(self.hop_s / self.chunk_s))
        phases = min(ticks, max(1, round(beds / most))) if beds else 1
        return Load(beds=beds, hop_s=self.hop_s, chunk_s=self.chunk_s, phases=phases)


def deadletter_record(reason: str, detail: str, topic: str, partition: int | None, offset: int | None,
                      key: bytes | None, payload: bytes | None) -> bytes:
    """A JSON dead letter that says why, where it came from, and carries the original bytes."""
    raw = bytes(payload or b"")
    return json.dumps(
        {
            "v": 1,
            "reason": reason,
            "detail": detail[:500],
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key_b64": base64.b64encode(key or b"").decode()[:512],
            "payload_bytes": len(raw),
            "payload_b64": base64.b64encode(raw[:DEADLETTER_PAYLOAD_BYTES]).decode(),
            "payload_truncated": len(raw) > DEADLETTER_PAYLOAD_BYTES,
            "received_at_s": time.time(),
        },
        separators=(",", ":"),
    ).encode()


def check_chunk(chunk: WaveformChunk, key: bytes | None, sample_rate_hz: float) -> None:
    """Checks beyond the codec's: the stream's rate, and the Kafka key that keeps a bed on one partition."""
    if abs(chunk.sample_rate_hz - sample_rate_hz) > 1e-3:
        raise DecodeError("wrong-rate", f"{chunk.sample_rate_hz} Hz, this stream runs at {sample_rate_hz} Hz")
    if key is not None and key != chunk.bed_id.encode():
        raise DecodeError("key-mismatch", f"key {key[:80]!r} is not bed id {chunk.bed_id!r}")


#: The dashboard's ECG strip: the window's last 4 s of the first lead at 50 Hz (200 values).
STRIP_S = 4.0
STRIP_HZ = 50.0


def ecg_strip(window: Window) -> tuple[float, ...]:
    """The last ``STRIP_S`` seconds of lead 0, averaged down to ``STRIP_HZ``; empty when samples are missing."""
    factor = max(1, round(window.sample_rate_hz / STRIP_HZ))
    n = int(STRIP_S * STRIP_HZ) * factor
    tail = window.samples[0, -n:]
    if tail.size < n or not np.isfinite(tail).all():
        return ()
    return tuple(np.round(tail.reshape(-1, factor).mean(axis=1), 3).tolist())


def verdict_to_record(window: Window, verdict: Verdict, plan: ServingPlan | None = None) -> ScoreRecord:
    """The score record for a window, with the plan's provenance in ``extra`` (``measured_ms`` is added when
    the record is published)."""
    strip = ecg_strip(window)
    extra: dict[str, float | int | str | None] = {}
    if plan is not None:
        extra = {
            "plan_id": plan.plan_id,
            "partial": int(verdict.partial),
            "skipped_models": ",".join(verdict.skipped),
            "budget_ms": plan.budget_ms if math.isfinite(plan.budget_ms) else None,
            "predicted_ms": round(plan.predicted_p99_ms, 1) if math.isfinite(plan.predicted_p99_ms) else None,
        }
    return ScoreRecord(
        bed_id=window.bed_id,
        window_end_s=window.end_s,
        window_s=window.window_s,
        state=verdict.state,
        risk=verdict.risk,
        reason=verdict.reason,
        quality=verdict.quality,
        heart_rate_bpm=verdict.heart_rate_bpm,
        complete=window.complete,
        models=verdict.models,
        scored_at_s=time.time(),
        seq_last=window.seq_last,
        strip_hz=window.sample_rate_hz / max(1, round(window.sample_rate_hz / STRIP_HZ)) if strip else None,
        strip_mv=strip,
        extra=extra,
    )


def plan_record(config: WorkerConfig, plan: ServingPlan, previous: ServingPlan | None, load: Load,
                measured_p99_ms: float | None, slowdown: float) -> PlanRecord:
    """The record announcing ``plan`` on the plans topic."""
    def finite(x: float) -> float:
        return x if math.isfinite(x) else 1e9

    return PlanRecord(
        worker_id=config.worker_id,
        plan_id=plan.plan_id,
        at_s=time.time(),
        reason=plan.reason[:500],
        members=plan.member_ids,
        previous=previous.member_ids if previous is not None else (),
        budget_ms=plan.budget_ms,
        predicted_p50_ms=round(finite(plan.predicted_p50_ms), 1),
        predicted_p99_ms=round(finite(plan.predicted_p99_ms), 1),
        objective=round(plan.objective, 5) if math.isfinite(plan.objective) else 0.0,
        beds=load.beds,
        hop_s=load.hop_s,
        windows_per_s=round(load.windows_per_s, 3),
        measured_p99_ms=round(measured_p99_ms, 1) if measured_p99_ms is not None else None,
        slowdown=round(slowdown, 3),
    )


def build_app(config: WorkerConfig, scorer: WindowScorer, planner: Planner | None = None) -> HolmesApp:
    """The Faust app with its one agent; ``faust.Worker(app).execute_from_commandline()`` runs it.

    With a ``planner`` the worker re-plans its ensemble as the load changes (``replan_interval_s``) and
    publishes every plan on the plans topic; windows carry deadlines (``budget_ms`` after acquisition, less
    :attr:`WorkerConfig.deadline_margin_s`) except in offline mode.
    """
    app = HolmesApp(
        config.app_id,
        broker=f"kafka://{config.kafka_bootstrap}",
        fetch_max_wait_ms=config.fetch_max_wait_ms,
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        datadir=str(config.datadir),
        broker_session_timeout=6,
        broker_heartbeat_interval=2,
        broker_request_timeout=30,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
        topic_partitions=config.topics.waveforms.partitions,
        producer_linger_ms=1,
    )
    waveforms = app.topic(config.topics.waveforms.name, key_type=bytes, value_type=bytes)
    scores = app.topic(config.topics.scores.name, key_type=bytes, value_type=bytes)
    deadletter = app.topic(config.topics.deadletter.name, key_type=bytes, value_type=bytes)
    plans = app.topic(config.topics.plans.name, key_type=bytes, value_type=bytes)
    windower = Windower(config.window_s, config.hop_s, config.sample_rate_hz, config.max_reorder_chunks)
    counters = WorkerCounters()
    tracker = LoadTracker(config.hop_s)
    recent_ms: deque[tuple[float, float]] = deque()  # (published at, acquisition -> published ms)
    app.holmes_counters = counters  # type: ignore[attr-defined]
    app.holmes_windower = windower  # type: ignore[attr-defined]
    deadlines = config.exec_mode != "offline"
    slowdown = Slowdown(planner.latency) if planner is not None else None
    if slowdown is not None:
        scorer.on_timing = slowdown.record
    plan_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="holmes-plan")
    budget_s = config.budget_ms / 1000.0 - config.deadline_margin_s

    def score_batch(items: list[tuple[Window, float]]) -> list[tuple[ScoreRecord, bool]]:
        plan = scorer.plan
        started = time.time()
        windows = [w for w, _ in items]
        verdicts = scorer.score([w.samples for w in windows], config.sample_rate_hz,
                                [w.end_s + budget_s for w in windows] if deadlines else None)
        done = time.time()
        out = []
        for (w, cut_s), v in zip(items, verdicts, strict=True):
            record = verdict_to_record(w, v, plan)
            if record.extra:  # where the worker's time went: chunk in -> window queued -> batch start -> done
                record.extra.update(ingest_ms=round((cut_s - w.end_s) * 1000.0, 1),
                                    queue_ms=round((started - cut_s) * 1000.0, 1),
                                    exec_ms=round((done - started) * 1000.0, 1), batch=len(items))
            out.append((record, v.partial))
        return out

    async def deliver(item: tuple[Window, float], result: tuple[ScoreRecord, bool]) -> None:
        window = item[0]
        record, partial = result
        counters.scores += 1
        counters.partial += partial
        if record.state != "ok":
            counters.unscorable += 1
        now = time.time()
        measured_ms = (now - window.end_s) * 1000.0
        recent_ms.append((now, measured_ms))
        if record.extra:
            record.extra["measured_ms"] = round(measured_ms, 1)
        await scores.send(key=window.bed_id.encode(), value=encode_score(record))

    async def scoring_failed(item: tuple[Window, float], exc: BaseException) -> None:
        verdict = Verdict("unscorable", None, f"scoring-error: {type(exc).__name__}", None, None, ())
        await deliver(item, (verdict_to_record(item[0], verdict), False))

    executor: BatchExecutor[tuple[Window, float], tuple[ScoreRecord, bool]] = BatchExecutor(
        score_batch, deliver, scoring_failed,
        max_batch=1 if config.exec_mode == "per-request" else config.max_batch,
        max_queue=config.max_queue,
        period_s=config.offline_period_s if config.exec_mode == "offline" else None,
    )
    app.holmes_executor = executor  # type: ignore[attr-defined]

    def measured_p99_ms() -> float | None:
        horizon = time.time() - config.stats_interval_s
        while recent_ms and recent_ms[0][0] < horizon:
            recent_ms.popleft()
        return float(np.percentile([ms for _, ms in recent_ms], 99)) if recent_ms else None

    async def publish_plan(plan: ServingPlan, previous: ServingPlan | None, load: Load) -> None:
        ratios = slowdown.snapshot() if slowdown is not None else {}
        worst = max([ratios.get(m, 1.0) for m in plan.member_ids] + [1.0])
        record = plan_record(config, plan, previous, load, measured_p99_ms(), worst)
        log.info("plan %d in force (%s): %s; predicted p50/p99 %.0f/%.0f ms, budget %.0f ms, validation ROC-AUC "
                 "%.4f", plan.plan_id, plan.reason, ", ".join(plan.member_ids), plan.predicted_p50_ms,
                 plan.predicted_p99_ms, plan.budget_ms, plan.objective)
        await plans.send(key=config.worker_id.encode(), value=encode_plan(record))

    async def dead_letter(reason: str, detail: str, message: Any) -> None:
        counters.dead_letters[reason] += 1
        log.warning("dead letter %s at %s[%s]@%s: %s", reason, message.topic, message.partition,
                    message.offset, detail[:200])
        await deadletter.send(
            key=reason.encode(),
            value=deadletter_record(reason, detail, message.topic, message.partition, message.offset,
                                    message.key, message.value),
        )

    @app.agent(waveforms, name="holmes-windowing")
    async def windowing(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            counters.chunks += 1
            try:
                chunk = decode_chunk(message.value)
                check_chunk(chunk, message.key, config.sample_rate_hz)
                outcome, windows = windower.push(chunk)
            except DecodeError as exc:
                await dead_letter(exc.reason, exc.detail, message)
                continue
            except Exception as exc:  # one bad message never kills the agent
                log.exception("unexpected failure on a chunk")
                await dead_letter("internal-error", f"{type(exc).__name__}: {exc}", message)
                continue
            if outcome is ChunkOutcome.RESET:
                log.info("bed %s changed leads or chunk length; its buffer restarted", chunk.bed_id)
            if windows:
                tracker.chunk_s = chunk.duration_s
                now = time.time()
            for window in windows:
                counters.windows += 1
                tracker.window(window.bed_id, window.end_s, now)
                try:
                    executor.submit((window, now))
                except QueueFull:
                    counters.shed += 1
                    log.error("executor queue full; window %s@%.3f shed", window.bed_id, window.end_s)
                    shed = Verdict("unscorable", None, "shed: scoring queue full", None, None, ())
                    await deliver((window, now), (verdict_to_record(window, shed), False))

    @app.task
    async def start_executor() -> None:
        await executor.start()
        if planner is not None:
            await publish_plan(scorer.plan, None, planner.load or Load(0, config.hop_s))

    replanning = {"busy": False}

    @app.timer(config.replan_interval_s)
    async def replan() -> None:
        if planner is None or config.exec_mode != "batched" or replanning["busy"]:
            return
        load = tracker.load(time.time())
        if load.beds == 0:
            return
        replanning["busy"] = True
        try:
            previous = scorer.plan
            loop = asyncio.get_running_loop()
            assert slowdown is not None
            plan = await loop.run_in_executor(plan_pool, planner.observe, time.time(), load, slowdown.snapshot(),
                                              slowdown.contention())
        except Exception:
            log.exception("re-planning failed; the plan in force stays")
            return
        finally:
            replanning["busy"] = False
        if plan is not None:
            await loop.run_in_executor(plan_pool, warm_plan, plan, config.max_batch)
            scorer.plan = plan
            log.warning("re-planned: %s", plan.reason)
            await publish_plan(plan, previous, load)

    @app.timer(config.stats_interval_s)
    async def report() -> None:
        t = windower.totals()
        p99 = measured_p99_ms()
        log.info(
            "chunks=%d windows=%d scored=%d unscorable=%d partial=%d shed=%d queue=%d duplicates=%d gaps=%d "
            "dead_letters=%s beds=%d plan=%d p99=%s ms",
            counters.chunks, counters.windows, counters.scores, counters.unscorable, counters.partial,
            counters.shed, executor.depth, t.duplicates, t.gaps, dict(counters.dead_letters), len(windower.beds),
            scorer.plan.plan_id, f"{p99:.0f}" if p99 is not None else "-",
        )
        write_stats(config.datadir / "stats.json", {
            "at_s": time.time(), "mode": config.exec_mode, "chunks": counters.chunks, "windows": counters.windows,
            "scores": counters.scores, "unscorable": counters.unscorable, "partial": counters.partial,
            "shed": counters.shed, "executor": {"items": executor.items, "batches": executor.batches,
                                                "busy_s": round(executor.busy_s, 3), "max_depth": executor.max_depth},
            "plan": {"plan_id": scorer.plan.plan_id, "members": list(scorer.plan.member_ids),
                     "predicted_p50_ms": scorer.plan.predicted_p50_ms,
                     "predicted_p99_ms": scorer.plan.predicted_p99_ms, "reason": scorer.plan.reason},
            "replans": planner.changes if planner is not None else 0,
            "slowdown": slowdown.snapshot() if slowdown is not None else {},
            "contention": slowdown.contention() if slowdown is not None else None,
            "load": _load_dict(tracker.load(time.time())),
            "measured_p99_ms": p99,
        })

    @app.on_rebalance_complete.connect
    async def on_rebalance(sender: Any, **kwargs: Any) -> None:
        if config.ready_file is not None:
            config.ready_file.parent.mkdir(parents=True, exist_ok=True)
            config.ready_file.write_text(str(time.time()))
        log.info("partitions assigned; worker is consuming")

    async def stop_executor(sender: Any = None, **kwargs: Any) -> None:
        await executor.stop()
        plan_pool.shutdown(wait=False)

    app.on_before_shutdown.connect(stop_executor)
    return app


def warm_plan(plan: ServingPlan, max_batch: int) -> None:
    """Run every member of ``plan`` once per power-of-two batch size up to ``max_batch`` (see
    :func:`models.zoo.warm_up`), so a new plan's first batches are not slow; models without it are skipped."""
    from models.zoo import warm_up

    sizes = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if b <= max_batch]
    for model in (*plan.members, *plan.fallback):
        if hasattr(model, "logits") and hasattr(model, "contract") and hasattr(model, "module"):
            warm_up(model, sizes)  # type: ignore[arg-type]


def _load_dict(load: Load) -> dict[str, float]:
    return {"beds": load.beds, "hop_s": load.hop_s, "chunk_s": load.chunk_s, "phases": load.phases}


def write_stats(path: Path, stats: dict[str, Any]) -> None:
    """Replace the worker's stats file (read by ``holmes bench``) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(stats, default=lambda x: None if isinstance(x, float) else str(x)))
    tmp.replace(path)


def run_worker(config: WorkerConfig, scorer: WindowScorer, loglevel: str = "info",
               planner: Planner | None = None) -> None:
    """Run the worker in the foreground until SIGINT/SIGTERM."""
    import faust

    app = build_app(config, scorer, planner)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
