"""The Faust worker: waveform chunks in, windows cut per bed, scores and dead letters out."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.executor import BatchExecutor, QueueFull
from ensemble.scoring import Verdict, WindowScorer
from ingest.codec import MAX_MESSAGE_BYTES, decode_chunk, encode_score
from ingest.errors import DecodeError
from ingest.schemas import ScoreRecord, WaveformChunk
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


@dataclass(slots=True)
class WorkerCounters:
    """What the worker has seen, for logs and (later) metrics."""

    chunks: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    windows: int = 0
    scores: int = 0
    unscorable: int = 0
    shed: int = 0


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


def verdict_to_record(window: Window, verdict: Verdict) -> ScoreRecord:
    """The score record for a window."""
    strip = ecg_strip(window)
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
    )


def build_app(config: WorkerConfig, scorer: WindowScorer) -> HolmesApp:
    """The Faust app with its one agent; ``faust.Worker(app).execute_from_commandline()`` runs it."""
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
    windower = Windower(config.window_s, config.hop_s, config.sample_rate_hz, config.max_reorder_chunks)
    counters = WorkerCounters()
    app.holmes_counters = counters  # type: ignore[attr-defined]
    app.holmes_windower = windower  # type: ignore[attr-defined]

    def score_batch(windows: list[Window]) -> list[ScoreRecord]:
        verdicts = scorer.score([w.samples for w in windows], config.sample_rate_hz)
        return [verdict_to_record(w, v) for w, v in zip(windows, verdicts, strict=True)]

    async def deliver(window: Window, record: ScoreRecord) -> None:
        counters.scores += 1
        if record.state != "ok":
            counters.unscorable += 1
        await scores.send(key=window.bed_id.encode(), value=encode_score(record))

    async def scoring_failed(window: Window, exc: BaseException) -> None:
        verdict = Verdict("unscorable", None, f"scoring-error: {type(exc).__name__}", None, None, ())
        await deliver(window, verdict_to_record(window, verdict))

    executor: BatchExecutor[Window, ScoreRecord] = BatchExecutor(
        score_batch, deliver, scoring_failed, max_batch=config.max_batch, max_queue=config.max_queue
    )

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
            for window in windows:
                counters.windows += 1
                try:
                    executor.submit(window)
                except QueueFull:
                    counters.shed += 1
                    log.error("executor queue full; window %s@%.3f shed", window.bed_id, window.end_s)
                    shed = Verdict("unscorable", None, "shed: scoring queue full", None, None, ())
                    await deliver(window, verdict_to_record(window, shed))

    @app.task
    async def start_executor() -> None:
        await executor.start()

    @app.timer(config.stats_interval_s)
    async def report() -> None:
        t = windower.totals()
        log.info(
            "chunks=%d windows=%d scored=%d unscorable=%d shed=%d queue=%d duplicates=%d gaps=%d "
            "dead_letters=%s beds=%d",
            counters.chunks, counters.windows, counters.scores, counters.unscorable, counters.shed,
            executor.depth, t.duplicates, t.gaps, dict(counters.dead_letters), len(windower.beds),
        )

    @app.on_rebalance_complete.connect
    async def on_rebalance(sender: Any, **kwargs: Any) -> None:
        if config.ready_file is not None:
            config.ready_file.parent.mkdir(parents=True, exist_ok=True)
            config.ready_file.write_text(str(time.time()))
        log.info("partitions assigned; worker is consuming")

    async def stop_executor(sender: Any = None, **kwargs: Any) -> None:
        await executor.stop()

    app.on_before_shutdown.connect(stop_executor)
    return app


def run_worker(config: WorkerConfig, scorer: WindowScorer, loglevel: str = "info") -> None:
    """Run the worker in the foreground until SIGINT/SIGTERM."""
    import faust

    app = build_app(config, scorer)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
