"""The Faust worker: waveform chunks in, windows cut per bed, scores and dead letters out.

Delivery semantics (at-least-once, no window lost across a crash, restart or rebalance):

* The waveform topic is consumed with Faust's acks off (Faust would commit a chunk's offset as soon as the
  agent moved on, while its windows are still in the ring buffer and the scoring queue). The worker commits
  offsets itself (:class:`CommitLedger`, every ``commit_interval_s``, on rebalance and at shutdown).
* A chunk's offset may be committed only when (1) the score of every window it completed is on the broker
  (the producer's send future resolved) and (2) no bed still needs its samples: a bed's ring buffer needs
  every chunk from the start of its next window (``window_s`` of history) and of any window not yet
  published, plus ``max_reorder_chunks + 1`` chunks of margin so that a replay starts ahead of a reordered
  chunk. The partition's committed offset is its oldest chunk still needed; dead letters count once they
  are on the broker, duplicates at once.
* After a crash the restarted worker (or the one that takes the partition over) re-reads from there, so its
  ring buffers are rebuilt and every window not yet published is cut and scored again. Windows published
  already may be published twice; scores are idempotent on ``(bed_id, window_end_s)`` downstream (the API's
  insert ignores a window it has), so replays create no duplicate rows.
* A rebalance keeps the state of a partition the worker keeps (same member, consecutive generation; the
  re-read from the committed offset is skipped up to the last offset processed) and drops the state of
  every other one (its beds' buffers go, in-flight windows are still published, their releases ignored).
  An offset below the worker's own commit means the partition was reset (a broker that lost its log):
  its state is dropped too.
* A bed that sends nothing for ``idle_release_s`` stops holding the commit back (a switched-off monitor
  must not pin its partition); its unfinished window is then not rebuilt by a replay.
* Window boundaries are rebuilt exactly only for fixed-length chunks (``ingest.windowing``): with chunks
  of 62/63 samples a replayed bed's windows would end at other samples.
* A failed score send is retried (``PUBLISH_RETRIES``); if it still fails its chunks stay uncommitted and a
  restart re-scores them.

The executor's queue is bounded (``max_queue``); a full queue sheds the window as an explicit ``unscorable``
score ("shed: scoring queue full"), never a silent gap. Its depth, high-water mark, bound and shed count are
in the log line, the stats file (``queue``) and every score's ``extra["queue_depth"]``; every score also
carries ``extra["worker_id"]``.
"""

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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ensemble.executor import BatchExecutor, QueueFull
from ensemble.latency import Load, Transport, ecg_like_window
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
    fetch_max_wait_ms: int = 50
    max_batch: int = 256
    max_queue: int = 20_000
    stats_interval_s: float = 10.0
    ready_file: Path | None = None
    datadir: Path = field(default_factory=lambda: Path(".holmes/worker"))
    budget_ms: float = 1000.0
    exec_mode: Literal["batched", "per-request", "offline"] = "batched"
    offline_period_s: float = 30.0
    replan_interval_s: float = 1.0
    #: how often safe waveform offsets are committed (see the module docstring)
    commit_interval_s: float = 1.0
    #: a bed silent for this long (wall clock) stops holding its partition's commit back
    idle_release_s: float = 60.0
    #: a bed silent for this long is forgotten (buffer, bookkeeping); it starts again if it comes back
    bed_evict_s: float = 900.0
    #: most beds one worker tracks; chunks of further new beds are dead-lettered (``too-many-beds``)
    max_beds: int = 10_000
    #: chunks stamped further ahead of this worker's clock are dead-lettered (``future-timestamp``)
    max_future_s: float = 300.0
    #: dead letters logged one per line per reason and minute before the rest are only counted
    deadletter_log_per_min: int = 10
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
    #: member runs for scored windows, and the runs a full ensemble would have made (partial windows skip some)
    member_runs: int = 0
    member_slots: int = 0
    shed: int = 0
    publish_errors: int = 0
    commits: int = 0


class LoadTracker:
    """What the planner needs to know of the load: beds streaming, how many windows fall due per tick, and how
    the chunks of a tick reach the worker.

    A bed counts while it sent within the last two hops, from its first chunk. The phases (ticks per hop at
    which windows fall due) are ``beds / (most windows due in one tick over the last hop)``: 1 when every
    bed's windows fall due together, ``hop / chunk`` when they are spread evenly. The spread is the median
    time between the first and the last chunk of a tick reaching the worker (beds whose clocks are not in
    step). Chunks less than ``BUNCH_GAP_S`` after the one before reached the worker in the same bunch (one
    send slot of a gateway, one fetch); the bunch interval is the median of ``span / (bunches - 1)`` over the
    ticks with more than one bunch. Chunks, not windows, are timed: every bed sends one per tick, so both are
    known a window length before the first window.
    """

    BUNCH_GAP_S = 0.01

    def __init__(self, hop_s: float) -> None:
        self.hop_s = hop_s
        self.chunk_s = 1.0
        self._last: dict[str, float] = {}
        # ticks closed: (closed at, windows, arrival span s, bunches)
        self._ticks: deque[tuple[float, int, float, int]] = deque()
        # ticks open, by tick: [first arrival, last arrival, windows, bunches]; the chunks of two ticks can
        # arrive interleaved (a bed late in one tick shares a send slot with one early in the next)
        self._open: dict[int, list[float]] = {}
        self._newest = -math.inf

    def _tick(self, end_s: float, now_s: float) -> list[float] | None:
        """The open tick of a chunk or window ending at ``end_s`` (None: a straggler of a closed one, or one
        stamped ahead of the worker's clock, which must not close the ticks of every other bed)."""
        key = math.floor(end_s / self.chunk_s)
        if key < self._newest - 1 or end_s > now_s + 2 * self.chunk_s:
            return None
        tick = self._open.get(key)
        if tick is None:
            self._open[key] = tick = [now_s, now_s, 0, 0]
            if key > self._newest:
                self._newest = key
                for old in [k for k in self._open if k < key - 1]:
                    first, last, windows, bunches = self._open.pop(old)
                    self._ticks.append((now_s, int(windows), last - first, int(bunches)))
        return tick

    def chunk(self, bed_id: str, now_s: float, end_s: float | None = None) -> None:
        """A chunk of ``bed_id`` (its last sample at ``end_s``) arrived: the bed counts from its first chunk, a
        window length before its first window, so the planner can shed for a ward that starts streaming before
        its windows queue up."""
        self._last[bed_id] = now_s
        tick = self._tick(end_s, now_s) if end_s is not None else None
        if tick is not None:
            if tick[3] == 0 or abs(now_s - tick[1]) >= self.BUNCH_GAP_S:
                tick[3] += 1  # a new bunch
            tick[0], tick[1] = min(tick[0], now_s), max(tick[1], now_s)

    def window(self, bed_id: str, end_s: float, now_s: float) -> None:
        self._last[bed_id] = now_s
        tick = self._tick(end_s, now_s)
        if tick is not None:
            tick[2] += 1

    def load(self, now_s: float) -> Load:
        horizon = now_s - 2 * self.hop_s
        for bed in [b for b, t in self._last.items() if t < horizon]:
            del self._last[bed]
        while self._ticks and self._ticks[0][0] < now_s - self.hop_s:
            self._ticks.popleft()
        beds = len(self._last)
        most = max([c for _, c, _, _ in self._ticks] + [int(t[2]) for t in self._open.values()] + [1])
        ticks = max(1, round(self.hop_s / self.chunk_s))
        phases = min(ticks, max(1, round(beds / most))) if beds else 1
        spans = sorted(span for _, _, span, _ in self._ticks)
        spread_s = min(self.chunk_s, spans[len(spans) // 2]) if spans else 0.0
        intervals = sorted(span / (bunches - 1) for _, _, span, bunches in self._ticks if bunches > 1)
        bunch_s = min(spread_s, intervals[len(intervals) // 2]) if intervals else 0.0
        return Load(beds=beds, hop_s=self.hop_s, chunk_s=self.chunk_s, phases=phases, spread_s=spread_s,
                    bunch_s=bunch_s)


class ChunkCost:
    """The event loop's wall-clock time per chunk, ms: decoding, windowing and Faust's own work per event.

    A chunk handled within ``BACK_TO_BACK_S`` of the previous one's end is counted from that end, so what the
    loop does between two events of one fetch is included. ``ms`` is the median of the last ``keep`` chunks
    (a first chunk that pays for imports and warm-up must not set it), None until ``min_samples`` were seen.
    """

    BACK_TO_BACK_S = 0.002

    def __init__(self, keep: int = 256, min_samples: int = 64) -> None:
        self._costs: deque[float] = deque(maxlen=keep)
        self._min_samples = min_samples
        self._end = -math.inf

    def record(self, started: float, ended: float) -> None:
        begin = self._end if 0 <= started - self._end < self.BACK_TO_BACK_S else started
        self._costs.append((ended - begin) * 1000.0)
        self._end = ended

    @property
    def ms(self) -> float | None:
        return float(np.median(self._costs)) if len(self._costs) >= self._min_samples else None


@dataclass(slots=True, eq=False)
class BedHold:
    """What one bed still needs of its partition: its next window, and the windows not yet published."""

    bed_id: str
    partition: int
    last_seen_s: float
    chunk_s: float = 1.0
    #: ``end_s`` of the last window cut; ``None`` until the first (or since a reset): every chunk is needed
    last_end_s: float | None = None
    #: ``end_s`` of windows cut but not yet on the broker -> how many
    pending: Counter[float] = field(default_factory=Counter)
    dropped: bool = False


@dataclass(slots=True, eq=False)
class SendHold:
    """A record derived from one message (a dead letter) that holds the offset until it is on the broker."""

    done: bool = False


@dataclass(slots=True)
class _PartitionLedger:
    #: (offset, what holds it, for a chunk: acquisition time one sample past its end), in offset order
    entries: deque[tuple[int, BedHold | SendHold | None, float]] = field(default_factory=deque)
    first_offset: int | None = None
    last_offset: int | None = None
    committed: int | None = None
    beds: set[str] = field(default_factory=set)


class CommitLedger:
    """Which offsets of the waveform topic are safe to commit (see the module docstring).

    The worker reports every message it processes (:meth:`accept` then :meth:`chunk` or :meth:`other`),
    every window it cuts (:meth:`cut`) and every score the broker acknowledged (:meth:`published`);
    :meth:`committable` walks each partition from its oldest entry and returns the first offset still needed.
    Times are the stream's acquisition times (seconds), so the rule does not depend on sample bookkeeping.
    """

    def __init__(self, window_s: float, hop_s: float, sample_rate_hz: float, margin_chunks: int = 3,
                 idle_release_s: float = 60.0, on_drop: Callable[[str], None] | None = None) -> None:
        self.window_s = window_s
        self.hop_s = hop_s
        self.sample_rate_hz = sample_rate_hz
        #: from a window's last sample back to its first
        self.span_s = (round(window_s * sample_rate_hz) - 1) / sample_rate_hz
        self.margin_chunks = margin_chunks
        self.idle_release_s = idle_release_s
        self.on_drop = on_drop
        self.partitions: dict[int, _PartitionLedger] = {}
        self.beds: dict[str, BedHold] = {}
        self.assigned: set[int] | None = None
        self.generation: int | None = None
        #: messages skipped because they were processed before a rebalance that kept their partition
        self.skipped = 0
        #: partitions whose offsets went back below our own commit (the broker lost its log)
        self.resets = 0

    def assign(self, partitions: Iterable[int], generation: int | None) -> list[str]:
        """A new assignment: keep the partitions held through consecutive generations, drop the rest.

        Returns the bed ids dropped (their ring buffers must go too; ``on_drop`` is called for each).
        """
        new = set(partitions)
        keep: set[int] = set()
        if (self.assigned is not None and self.generation is not None and generation is not None
                and generation == self.generation + 1):
            keep = self.assigned & new
        dropped: list[str] = []
        for p in [p for p in self.partitions if p not in keep]:
            dropped += self.drop_partition(p)
        self.assigned, self.generation = new, generation
        return dropped

    def drop_partition(self, partition: int) -> list[str]:
        """Forget a partition and its beds; returns the bed ids dropped."""
        part = self.partitions.pop(partition, None)
        if part is None:
            return []
        dropped = []
        for bed_id in part.beds:
            hold = self.beds.get(bed_id)
            if hold is not None and hold.partition == partition:
                hold.dropped = True
                del self.beds[bed_id]
                dropped.append(bed_id)
                if self.on_drop is not None:
                    self.on_drop(bed_id)
        return dropped

    def accept(self, partition: int, offset: int) -> bool:
        """Whether to process this message; ``False`` for one already processed (re-read after a rebalance
        that kept the partition) or from a partition not assigned to this worker."""
        if self.assigned is not None and partition not in self.assigned:
            self.skipped += 1
            return False
        part = self.partitions.get(partition)
        if part is not None and part.last_offset is not None and offset <= part.last_offset:
            if part.committed is None or offset >= part.committed:
                self.skipped += 1
                return False
            log.warning("partition %d went back to offset %d, below our commit at %d: its log was reset; "
                        "its beds start again", partition, offset, part.committed)
            self.resets += 1
            self.drop_partition(partition)
            part = None
        if part is None:
            part = self.partitions[partition] = _PartitionLedger(first_offset=offset)
        part.last_offset = offset
        return True

    def chunk(self, partition: int, offset: int, bed_id: str, t_end_s: float, chunk_s: float,
              now_s: float) -> BedHold:
        """A chunk of ``bed_id`` (acquisition time ``t_end_s`` one sample past its end) was processed."""
        hold = self.beds.get(bed_id)
        if hold is None:
            hold = self.beds[bed_id] = BedHold(bed_id, partition, now_s, chunk_s)
        elif hold.partition != partition:  # a bed never changes partition unless its key does; follow it
            previous = self.partitions.get(hold.partition)
            if previous is not None:
                previous.beds.discard(bed_id)
            hold.partition = partition
        hold.last_seen_s, hold.chunk_s = now_s, chunk_s
        part = self.partitions[partition]
        part.beds.add(bed_id)
        part.entries.append((offset, hold, t_end_s))
        return hold

    def other(self, partition: int, offset: int, hold: SendHold | None = None) -> None:
        """A message that holds nothing (a duplicate) or only until ``hold`` is done (a dead letter)."""
        self.partitions[partition].entries.append((offset, hold, 0.0))

    def evict_idle(self, now_s: float, idle_s: float) -> list[str]:
        """Forget beds silent for more than ``idle_s`` (monotonic ``now_s``) with no score still on its way: a
        discharged patient's buffer and bookkeeping go, and it holds no commit back. Returns the bed ids dropped
        (``on_drop`` is called for each); a bed that comes back starts again like a new one."""
        gone = [b for b, h in self.beds.items() if now_s - h.last_seen_s > idle_s and not h.pending]
        for bed_id in gone:
            hold = self.beds.pop(bed_id)
            hold.dropped = True
            part = self.partitions.get(hold.partition)
            if part is not None:
                part.beds.discard(bed_id)
            if self.on_drop is not None:
                self.on_drop(bed_id)
        return gone

    def reset(self, hold: BedHold) -> None:
        """The bed's buffer restarted (lead set changed): every chunk from here on is needed again."""
        hold.last_end_s = None

    def cut(self, hold: BedHold, end_s: float) -> None:
        """A window ending at ``end_s`` was cut and is on its way to the broker."""
        hold.pending[end_s] += 1
        hold.last_end_s = end_s if hold.last_end_s is None else max(hold.last_end_s, end_s)

    def published(self, hold: BedHold, end_s: float) -> None:
        """The broker acknowledged the score of the window ending at ``end_s``."""
        n = hold.pending.get(end_s, 0)
        if n <= 1:
            hold.pending.pop(end_s, None)
        else:
            hold.pending[end_s] = n - 1

    def hold_from_s(self, hold: BedHold, now_s: float) -> float:
        """Acquisition time before which the bed needs no chunk."""
        if hold.dropped:
            return math.inf
        if now_s - hold.last_seen_s > self.idle_release_s:
            start = math.inf
        elif hold.last_end_s is None:
            start = -math.inf
        else:
            start = hold.last_end_s + self.hop_s - self.span_s
        if hold.pending:
            start = min(start, min(hold.pending) - self.span_s)
        return start - self.margin_chunks * hold.chunk_s

    def committable(self, now_s: float) -> dict[int, int]:
        """Per assigned partition, the offset to commit (next to read) where it moved past the last commit."""
        tolerance_s = 0.5 / self.sample_rate_hz
        cache: dict[int, float] = {}
        out = {}
        for p, part in self.partitions.items():
            if self.assigned is not None and p not in self.assigned:
                continue
            entries = part.entries
            while entries:
                _, hold, t_end_s = entries[0]
                if isinstance(hold, SendHold):
                    if not hold.done:
                        break
                elif hold is not None:
                    key = id(hold)
                    if key not in cache:
                        cache[key] = self.hold_from_s(hold, now_s)
                    if t_end_s > cache[key] + tolerance_s:
                        break
                entries.popleft()
            head = entries[0][0] if entries else (part.last_offset + 1 if part.last_offset is not None else None)
            floor = part.committed if part.committed is not None else part.first_offset
            if head is not None and floor is not None and head > floor:
                out[p] = head
        return out

    def committed(self, offsets: Mapping[int, int]) -> None:
        """Record offsets the broker accepted."""
        for p, offset in offsets.items():
            part = self.partitions.get(p)
            if part is not None:
                part.committed = offset

    def figures(self) -> dict[str, Any]:
        """For the stats file: committed and last read offsets, what is held back."""
        return {
            "committed": {p: part.committed for p, part in sorted(self.partitions.items())},
            "read": {p: part.last_offset for p, part in sorted(self.partitions.items())},
            "held_messages": sum(len(part.entries) for part in self.partitions.values()),
            "pending_windows": sum(sum(h.pending.values()) for h in self.beds.values()),
            "skipped_rereads": self.skipped,
            "resets": self.resets,
            "generation": self.generation,
        }


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


def check_chunk(chunk: WaveformChunk, key: bytes | None, sample_rate_hz: float, now_s: float | None = None,
                max_future_s: float = 300.0) -> None:
    """Checks beyond the codec's: the stream's rate, the Kafka key that keeps a bed on one partition, and (given
    the worker's clock ``now_s``) a time stamp no more than ``max_future_s`` ahead of it."""
    if abs(chunk.sample_rate_hz - sample_rate_hz) > 1e-3:
        raise DecodeError("wrong-rate", f"{chunk.sample_rate_hz} Hz, this stream runs at {sample_rate_hz} Hz")
    if key is None:
        raise DecodeError("null-key", f"a chunk of bed {chunk.bed_id!r} without a Kafka key (the key must be the "
                                      "bed id, so that a bed's chunks stay on one partition, in order)")
    if key != chunk.bed_id.encode():
        raise DecodeError("key-mismatch", f"key {key[:80]!r} is not bed id {chunk.bed_id!r}")
    if now_s is not None and chunk.t0_s > now_s + max_future_s:
        raise DecodeError("future-timestamp", f"chunk of {chunk.bed_id!r} stamped {chunk.t0_s - now_s:.3g} s "
                                              f"ahead of this worker's clock (at most {max_future_s:g} s)")


class LogThrottle:
    """At most ``per_interval`` log lines per key and interval; the rest are counted and summed up once.

    ``allow(key, now_s)`` says whether to log this one; ``flush(now_s)`` returns ``{key: suppressed}`` for intervals
    that ended (and forgets them).
    """

    def __init__(self, per_interval: int, interval_s: float = 60.0) -> None:
        self.per_interval = per_interval
        self.interval_s = interval_s
        self._windows: dict[str, tuple[float, int]] = {}

    def allow(self, key: str, now_s: float) -> bool:
        start, n = self._windows.get(key, (now_s, 0))
        if now_s - start >= self.interval_s:
            start, n = now_s, 0
        self._windows[key] = (start, n + 1)
        return n < self.per_interval

    def flush(self, now_s: float) -> dict[str, int]:
        out = {}
        for key, (start, n) in list(self._windows.items()):
            if now_s - start >= self.interval_s:
                del self._windows[key]
                if n > self.per_interval:
                    out[key] = n - self.per_interval
        return out


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


#: Tries of a score or dead-letter send before its offsets are left uncommitted for a restart to replay.
PUBLISH_RETRIES = 5
#: the upstream transport (acquisition -> queued for the executor) the planner uses: the windows of the last
#: 30 s, at most 20,000, and none until 50 were seen
UPSTREAM_HORIZON_S = 30.0
UPSTREAM_SAMPLES = 20_000
UPSTREAM_MIN_SAMPLES = 50


@dataclass(frozen=True, slots=True)
class WindowJob:
    """A window on its way through the executor: when it was cut, and the bed hold it keeps uncommitted."""

    window: Window
    cut_s: float
    hold: BedHold | None = None


def build_app(config: WorkerConfig, scorer: WindowScorer, planner: Planner | None = None) -> HolmesApp:
    """The Faust app with its one agent; ``faust.Worker(app).execute_from_commandline()`` runs it.

    With a ``planner`` the worker re-plans its ensemble as the load changes (``replan_interval_s``) and
    publishes every plan on the plans topic; windows carry deadlines (``budget_ms`` after acquisition, less
    :attr:`WorkerConfig.deadline_margin_s` and the measured time to publish the scores ahead of it in its batch)
    except in offline mode. Waveform offsets are committed by the
    worker's :class:`CommitLedger` (module docstring), not by Faust.
    """
    from faust.types import TP

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
    # acks=False: Faust never commits this topic; the ledger decides what is safe.
    waveforms = app.topic(config.topics.waveforms.name, key_type=bytes, value_type=bytes, acks=False)
    scores = app.topic(config.topics.scores.name, key_type=bytes, value_type=bytes)
    deadletter = app.topic(config.topics.deadletter.name, key_type=bytes, value_type=bytes)
    plans = app.topic(config.topics.plans.name, key_type=bytes, value_type=bytes)
    windower = Windower(config.window_s, config.hop_s, config.sample_rate_hz, config.max_reorder_chunks,
                        max_beds=config.max_beds)
    ledger = CommitLedger(config.window_s, config.hop_s, config.sample_rate_hz,
                          margin_chunks=config.max_reorder_chunks + 1, idle_release_s=config.idle_release_s,
                          on_drop=windower.drop)
    counters = WorkerCounters()
    tracker = LoadTracker(config.hop_s)
    chunk_cost = ChunkCost()
    recent_ms: deque[tuple[float, float]] = deque()  # (published at, acquisition -> published ms)
    # (queued at, acquisition -> queued for the executor ms): the latency model's measured upstream transport
    upstream_ms: deque[tuple[float, float]] = deque(maxlen=UPSTREAM_SAMPLES)
    app.holmes_counters = counters  # type: ignore[attr-defined]
    app.holmes_windower = windower  # type: ignore[attr-defined]
    app.holmes_ledger = ledger  # type: ignore[attr-defined]
    deadlines = config.exec_mode != "offline"
    slowdown = Slowdown(planner.latency) if planner is not None else None
    probe_window = ecg_like_window(config.window_s, 2, config.sample_rate_hz)
    if slowdown is not None:
        scorer.on_timing = slowdown.record
    plan_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="holmes-plan")
    budget_s = config.budget_ms / 1000.0 - config.deadline_margin_s
    sending = {"in_flight": 0}
    retries: set[asyncio.Task[None]] = set()

    def score_batch(jobs: list[WindowJob]) -> list[tuple[ScoreRecord, bool]]:
        plan = scorer.plan
        started = time.time()
        windows = [j.window for j in jobs]
        # scores go out one by one after the batch: the k-th waits for k publications (measured per score)
        deliver_s = publish_ms_per_score() / 1000.0
        verdicts = scorer.score([w.samples for w in windows], config.sample_rate_hz,
                                [w.end_s + budget_s - deliver_s * (k + 1) for k, w in enumerate(windows)]
                                if deadlines else None)
        done = time.time()
        out = []
        for job, v in zip(jobs, verdicts, strict=True):
            w = job.window
            if v.state == "ok":
                counters.member_runs += len(v.models)
                counters.member_slots += len(v.models) + len(v.skipped)
            record = verdict_to_record(w, v, plan)
            if record.extra:  # where the worker's time went: chunk in -> window queued -> batch start -> done
                record.extra.update(ingest_ms=round((job.cut_s - w.end_s) * 1000.0, 1),
                                    queue_ms=round((started - job.cut_s) * 1000.0, 1),
                                    exec_ms=round((done - started) * 1000.0, 1), batch=len(jobs))
            out.append((record, v.partial))
        return out

    def publish_ms_per_score() -> float:
        """The event loop's time per published score: measured once batches of several went out, else the
        latency model's prior at the assumed contention."""
        if executor.deliver_ms is not None:
            return executor.deliver_ms
        if planner is None:
            return 0.0
        return planner.latency.costs.deliver_ms * planner.config.contention

    async def publish(topic: Any, key: bytes, value: bytes, on_done: Callable[[], None] | None,
                      attempt: int = 1) -> None:
        """Hand a record to the producer; ``on_done`` runs once the broker has acknowledged it."""
        try:
            future = asyncio.ensure_future(await topic.send(key=key, value=value))
        except Exception as exc:  # the producer refused it outright
            send_failed(topic, key, value, on_done, attempt, exc)
            return
        sending["in_flight"] += 1

        def sent(fut: asyncio.Future[Any]) -> None:
            sending["in_flight"] -= 1
            exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
            if exc is None:
                if on_done is not None:
                    on_done()
            else:
                send_failed(topic, key, value, on_done, attempt, exc)

        future.add_done_callback(sent)

    def send_failed(topic: Any, key: bytes, value: bytes, on_done: Callable[[], None] | None, attempt: int,
                    exc: BaseException) -> None:
        counters.publish_errors += 1
        name = topic.get_topic_name()
        if attempt >= PUBLISH_RETRIES:
            log.error("giving up on a record for %s (key %r) after %d tries: %s; the offsets it depends on stay "
                      "uncommitted, so a restart re-reads and re-scores them", name, key[:64], attempt, exc)
            return
        delay_s = min(5.0, 0.2 * 2**attempt)
        log.warning("send to %s failed (%s: %s); retry %d in %.1f s", name, type(exc).__name__, exc, attempt,
                    delay_s)

        async def retry() -> None:
            await asyncio.sleep(delay_s)
            await publish(topic, key, value, on_done, attempt + 1)

        task = asyncio.get_running_loop().create_task(retry())
        retries.add(task)
        task.add_done_callback(retries.discard)

    async def deliver(job: WindowJob, result: tuple[ScoreRecord, bool]) -> None:
        window = job.window
        record, partial = result
        counters.scores += 1
        counters.partial += partial
        if record.state != "ok":
            counters.unscorable += 1
        now = time.time()
        measured_ms = (now - window.end_s) * 1000.0
        recent_ms.append((now, measured_ms))
        upstream_ms.append((job.cut_s, (job.cut_s - window.end_s) * 1000.0))
        if record.extra:
            record.extra["measured_ms"] = round(measured_ms, 1)
        record.extra["worker_id"] = config.worker_id
        record.extra["queue_depth"] = executor.depth
        hold = job.hold
        on_done = None if hold is None else (lambda: ledger.published(hold, window.end_s))
        await publish(scores, window.bed_id.encode(), encode_score(record), on_done)

    async def scoring_failed(job: WindowJob, exc: BaseException) -> None:
        verdict = Verdict("unscorable", None, f"scoring-error: {type(exc).__name__}", None, None, ())
        await deliver(job, (verdict_to_record(job.window, verdict), False))

    executor: BatchExecutor[WindowJob, tuple[ScoreRecord, bool]] = BatchExecutor(
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

    def measured_transport() -> Transport | None:
        """The upstream time of the windows queued in the last ``UPSTREAM_HORIZON_S`` (None: too few yet)."""
        if planner is None:
            return None
        horizon = time.time() - UPSTREAM_HORIZON_S
        samples = [ms for at, ms in list(upstream_ms) if at >= horizon]
        if len(samples) < UPSTREAM_MIN_SAMPLES:
            return None
        prior = planner.latency.transport
        return Transport.measured(samples, prior.downstream_ms, prior.downstream_wait_ms, levels=64)

    async def publish_plan(plan: ServingPlan, previous: ServingPlan | None, load: Load) -> None:
        ratios = slowdown.snapshot() if slowdown is not None else {}
        worst = max([ratios.get(m, 1.0) for m in plan.member_ids] + [1.0])
        record = plan_record(config, plan, previous, load, measured_p99_ms(), worst)
        log.info("plan %d in force (%s): %s; predicted p50/p99 %.0f/%.0f ms, budget %.0f ms, validation ROC-AUC "
                 "%.4f", plan.plan_id, plan.reason, ", ".join(plan.member_ids), plan.predicted_p50_ms,
                 plan.predicted_p99_ms, plan.budget_ms, plan.objective)
        await plans.send(key=config.worker_id.encode(), value=encode_plan(record))

    dl_throttle = LogThrottle(config.deadletter_log_per_min, 60.0)

    async def dead_letter(reason: str, detail: str, message: Any) -> None:
        counters.dead_letters[reason] += 1
        if dl_throttle.allow(reason, time.monotonic()):
            log.warning("dead letter %s at %s[%s]@%s: %s", reason, message.topic, message.partition,
                        message.offset, detail[:200])
        hold = SendHold()
        ledger.other(message.partition, message.offset, hold)

        def done() -> None:
            hold.done = True

        await publish(deadletter, reason.encode(),
                      deadletter_record(reason, detail, message.topic, message.partition, message.offset,
                                        message.key, message.value), done)

    @app.agent(waveforms, name="holmes-windowing")
    async def windowing(stream: Any) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            message = event.message
            if not ledger.accept(message.partition, message.offset):
                continue  # processed before a rebalance that kept its partition, or not ours any more
            counters.chunks += 1
            try:
                chunk = decode_chunk(message.value)
                check_chunk(chunk, message.key, config.sample_rate_hz, time.time(), config.max_future_s)
                outcome, windows = windower.push(chunk)
            except DecodeError as exc:
                await dead_letter(exc.reason, exc.detail, message)
                continue
            except Exception as exc:  # one bad message never kills the agent
                log.exception("unexpected failure on a chunk")
                await dead_letter("internal-error", f"{type(exc).__name__}: {exc}", message)
                continue
            hold: BedHold | None = None
            if outcome is ChunkOutcome.DUPLICATE:
                ledger.other(message.partition, message.offset)
            else:
                hold = ledger.chunk(message.partition, message.offset, chunk.bed_id,
                                    chunk.t0_s + chunk.n_samples / chunk.sample_rate_hz, chunk.duration_s,
                                    time.monotonic())
            now = time.time()
            tracker.chunk(chunk.bed_id, now, chunk.t0_s + chunk.n_samples / chunk.sample_rate_hz)
            if outcome is ChunkOutcome.RESET:
                log.info("bed %s changed leads or chunk length; its buffer restarted", chunk.bed_id)
                if hold is not None:
                    ledger.reset(hold)
            if windows:
                tracker.chunk_s = chunk.duration_s
            for window in windows:
                counters.windows += 1
                tracker.window(window.bed_id, window.end_s, now)
                if hold is not None:
                    ledger.cut(hold, window.end_s)
                job = WindowJob(window, now, hold)
                try:
                    executor.submit(job)
                except QueueFull:
                    await shed(job)
            chunk_cost.record(started, time.perf_counter())

    async def shed(job: WindowJob) -> None:
        """The bounded queue is full: the window is published as unscorable, with the reason, not dropped."""
        counters.shed += 1
        log.error("executor queue full (%d); window %s@%.3f shed", executor.max_queue, job.window.bed_id,
                  job.window.end_s)
        verdict = Verdict("unscorable", None, "shed: scoring queue full", None, None, ())
        await deliver(job, (verdict_to_record(job.window, verdict), False))

    app.holmes_shed = shed  # type: ignore[attr-defined]
    commit_lock = asyncio.Lock()

    async def commit_safe(why: str) -> None:
        """Commit what the ledger says is safe."""
        async with commit_lock:
            offsets = ledger.committable(time.monotonic())
            if not offsets:
                return
            topic = config.topics.waveforms.name
            done = await app.commit_exact({TP(topic, p): offset for p, offset in offsets.items()})
            if done:
                ledger.committed({tp.partition: offset for tp, offset in done.items()})
                counters.commits += 1
                log.debug("committed (%s) %s", why, {tp.partition: offset for tp, offset in done.items()})

    @app.timer(config.commit_interval_s)
    async def commit_offsets() -> None:
        if not app.rebalancing:
            await commit_safe("interval")

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
        # The flow is stopped: commit what is safe before the partitions may go to another member.
        try:
            await commit_safe("revoke")
        except Exception:
            log.exception("commit on revoke failed; the next owner re-reads a little more")

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any = None, **kwargs: Any) -> None:
        mine = {tp.partition for tp in assigned or () if tp.topic == config.topics.waveforms.name}
        dropped = ledger.assign(mine, app.consumer_generation_id)
        log.info("generation %s: %d waveform partitions %s; %d beds' buffers dropped (re-read from the "
                 "committed offsets)", app.consumer_generation_id, len(mine), sorted(mine), len(dropped))

    @app.task
    async def start_executor() -> None:
        await executor.start()
        if planner is not None:
            await publish_plan(scorer.plan, None, planner.load or Load(0, config.hop_s))

    replanning = {"busy": False}
    last_load: dict[str, Load] = {}  # the last load measured on windows, for the stats after a stream stops
    last_load_windows = {"n": 0}

    @app.timer(config.replan_interval_s)
    async def replan() -> None:
        if planner is None or config.exec_mode != "batched" or replanning["busy"]:
            return
        replanning["busy"] = True
        try:
            previous = scorer.plan
            loop = asyncio.get_running_loop()
            assert slowdown is not None
            if time.monotonic() - slowdown.features_at_s > 2.0:  # the executor is idle: keep the contention current
                await loop.run_in_executor(plan_pool, slowdown.probe, probe_window, config.sample_rate_hz,
                                           scorer.extract)
            load = tracker.load(time.time())
            if load.beds == 0:
                return
            if counters.windows != last_load_windows["n"]:  # windows still coming: the load is measured
                last_load["load"], last_load_windows["n"] = load, counters.windows
            plan = await loop.run_in_executor(plan_pool, planner.observe, time.time(), load, slowdown.snapshot(),
                                              slowdown.contention_at_least(planner.config.contention),
                                              measured_p99_ms(), measured_transport(),
                                              chunk_cost.ms, slowdown.jitter(), executor.deliver_ms)
            # the deadline checks predict with what the planner now knows (contention, slowdowns, costs)
            scorer.latency = planner.model()
        except Exception:
            log.exception("re-planning failed; the plan in force stays")
            return
        finally:
            replanning["busy"] = False
        if plan is not None:
            await loop.run_in_executor(plan_pool, warm_plan, plan, config.max_batch, previous)
            scorer.plan = plan
            log.warning("re-planned: %s", plan.reason)
            await publish_plan(plan, previous, load)

    def queue_figures() -> dict[str, int]:
        return {"depth": executor.depth, "max_depth": executor.max_depth, "max_queue": executor.max_queue,
                "shed": counters.shed}

    @app.timer(config.stats_interval_s)
    async def report() -> None:
        for reason, n in sorted(dl_throttle.flush(time.monotonic()).items()):
            log.warning("%d more dead letters %s in the last minute (not logged one by one)", n, reason)
        evicted = ledger.evict_idle(time.monotonic(), config.bed_evict_s)
        if evicted:
            log.info("%d beds silent for more than %.0f s forgotten: %s", len(evicted), config.bed_evict_s,
                     ", ".join(evicted[:10]) + (" ..." if len(evicted) > 10 else ""))
        t = windower.totals()
        p99 = measured_p99_ms()
        delivery = ledger.figures()
        log.info(
            "chunks=%d windows=%d scored=%d unscorable=%d partial=%d shed=%d queue=%d (max %d of %d) "
            "duplicates=%d gaps=%d dead_letters=%s beds=%d plan=%d p99=%s ms held=%d pending=%d "
            "publish_errors=%d",
            counters.chunks, counters.windows, counters.scores, counters.unscorable, counters.partial,
            counters.shed, executor.depth, executor.max_depth, executor.max_queue, t.duplicates, t.gaps,
            dict(counters.dead_letters), len(windower.beds), scorer.plan.plan_id,
            f"{p99:.0f}" if p99 is not None else "-", delivery["held_messages"], delivery["pending_windows"],
            counters.publish_errors,
        )
        write_stats(config.datadir / "stats.json", {
            "at_s": time.time(), "worker_id": config.worker_id, "mode": config.exec_mode, "chunks": counters.chunks,
            "windows": counters.windows, "scores": counters.scores, "unscorable": counters.unscorable,
            "partial": counters.partial, "shed": counters.shed,
            "member_runs": counters.member_runs, "member_slots": counters.member_slots,
            "executor": {"items": executor.items, "batches": executor.batches,
                         "busy_s": round(executor.busy_s, 3), "max_depth": executor.max_depth,
                         "deliver_ms": None if executor.deliver_ms is None else round(executor.deliver_ms, 4)},
            "queue": queue_figures(),
            "delivery": {**delivery, "in_flight_sends": sending["in_flight"], "retrying_sends": len(retries),
                         "publish_errors": counters.publish_errors, "commits": counters.commits},
            "plan": {"plan_id": scorer.plan.plan_id, "members": list(scorer.plan.member_ids),
                     "fallback": [m.model_id for m in scorer.plan.fallback],
                     "predicted_p50_ms": scorer.plan.predicted_p50_ms,
                     "predicted_p99_ms": scorer.plan.predicted_p99_ms, "reason": scorer.plan.reason},
            "replans": planner.changes if planner is not None else 0,
            "slowdown": slowdown.snapshot() if slowdown is not None else {},
            "contention": slowdown.contention() if slowdown is not None else None,
            "load": _load_dict(tracker.load(time.time())),
            "last_load": _load_dict(last_load["load"]) if "load" in last_load else None,
            "measured_p99_ms": p99,
            "transport": _transport_dict(measured_transport()),
            "chunk_ms": round(chunk_cost.ms, 4) if chunk_cost.ms is not None else None,
            "jitter": list(slowdown.jitter()) if slowdown is not None else None,
            # the idle feature costs timed at start: the contention above is measured against them
            "feature_costs_ms": None if planner is None else {
                "fixed": planner.latency.costs.feature_fixed_ms, "per_window": planner.latency.costs.feature_ms},
            # and the candidates' profiles as timed at start over their cards' (batch 1, batch 64)
            "profile_scales": None if planner is None else {
                m: list(scale) for m, scale in planner.latency.profile_scales.items()},
        })

    @app.on_rebalance_complete.connect
    async def on_rebalance(sender: Any, **kwargs: Any) -> None:
        if config.ready_file is not None:
            config.ready_file.parent.mkdir(parents=True, exist_ok=True)
            config.ready_file.write_text(str(time.time()))
        log.info("partitions assigned; worker is consuming")

    async def stop_executor(sender: Any = None, **kwargs: Any) -> None:
        # Score what is queued, wait for the broker to acknowledge it, then commit what that made safe.
        await executor.stop()
        deadline = time.monotonic() + 10.0
        while (sending["in_flight"] or retries) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        try:
            await commit_safe("shutdown")
        except Exception:
            log.exception("final commit failed; a restart re-reads a little more")
        plan_pool.shutdown(wait=False)
        if planner is not None:
            planner.close()

    app.on_before_shutdown.connect(stop_executor)
    return app


def warm_plan(plan: ServingPlan, max_batch: int, warm: ServingPlan | None = None) -> None:
    """Run every member of ``plan`` once per power-of-two batch size up to ``max_batch`` (see
    :func:`models.zoo.warm_up`), so a new plan's first batches are not slow; models without it are skipped, and
    so are those ``warm`` (the plan in force) already served: a shed under overload re-warmed them all at batch
    256, seconds of CPU at the worst moment."""
    from models.zoo import warm_up

    served = set() if warm is None else {id(m) for m in (*warm.members, *warm.fallback)}
    sizes = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if b <= max_batch]
    for model in (*plan.members, *plan.fallback):
        if id(model) in served:
            continue
        if hasattr(model, "logits") and hasattr(model, "contract") and hasattr(model, "module"):
            warm_up(model, sizes)  # type: ignore[arg-type]


def _load_dict(load: Load) -> dict[str, float]:
    return {"beds": load.beds, "hop_s": load.hop_s, "chunk_s": load.chunk_s, "phases": load.phases,
            "spread_s": round(load.spread_s, 3), "bunch_s": round(load.bunch_s, 3)}


def _transport_dict(transport: Transport | None) -> dict[str, Any] | None:
    if transport is None:
        return None
    return {"upstream_ms": list(transport.upstream_ms), "downstream_ms": transport.downstream_ms,
            "downstream_wait_ms": transport.downstream_wait_ms}


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
