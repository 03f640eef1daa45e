"""The bed simulator: builds every bed's waveform chunks tick by tick and sends them paced in (scaled) real time.

It is a load generator sharing the machine with the system under test, so its own CPU is kept small: beds
spread over a tick are sent in short slots (``SimulatorConfig.slot_s``, 100 ms by default), never before a
chunk's acquisition end and less than one slot after it, which makes ~10 wake-ups a second instead of one per
bed, and each slot goes to the producer as one burst (``KafkaSend.send_many``), as a gateway forwarding a unit's
monitors would. Fewer, larger produce batches also keep the embedded broker's reads cheap: its CPU for one
consumer of 1,000 spread beds was 16 s per 30 s with 20-ms slots, 8 s with 50-ms and 5 s with 100-ms slots
(BROKER.md point 5: its reads cost grows with the batches a partition holds).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ingest.codec import encode_chunk
from ingest.schemas import BED_ID_RE, WaveformChunk
from simulator.errors import ConfigError, DataNotFoundError
from simulator.events import SAMPLE_EVENT_KINDS, WIRE_EVENT_KINDS, Event, EventSource, WireEffects
from simulator.sources import SOURCE_KINDS, AfLibrary, Source, SourceKind, bed_seed, make_sources

MIN_CHUNK_S = 0.25
MAX_CHUNK_S = 1.0
#: Seconds of each bed's signal loaded before the clock starts (at most the run): beyond the first block, what
#: a bed reaches while streaming is otherwise resampled then, on the machine the system under test runs on.
PREWARM_S = 120.0
#: Spread-mode sends are coalesced into slots of this many real seconds (see ``SimulatorConfig.slot_s``).
DEFAULT_SLOT_S = 0.1
MAX_SLOT_S = 0.25

#: ``send(bed_id, payload)``; one that also has ``send_many(items)`` gets each slot's chunks in one call.
Send = Callable[[str, bytes], None]
#: Sends scheduled closer together than this (float rounding of one moment) go out as one.
_SAME_MOMENT_S = 1e-6


def _finite(x: float) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """What to simulate; validated on construction (``ConfigError``, a ``ValueError``)."""

    n_beds: int
    duration_s: float
    source: SourceKind = "mitdb"
    chunk_s: float = 1.0
    speed: float = 1.0
    sample_rate_hz: float = 250.0
    seed: int = 0
    data_dir: Path | None = None
    events: tuple[Event, ...] = ()
    bed_id_prefix: str = "bed-"
    start_time_s: float | None = None
    synthetic_af_fraction: float = 0.0
    #: Bed ``i`` starts ``i % stagger_ticks`` chunks late (and ends as late), so its windows fall due in its
    #: own tick of the hop, as monitors switched on at different moments do. 1 = every bed in step (the
    #: worst case for the worker: all windows due at once).
    stagger_ticks: int = 1
    #: Each bed's clock also runs a fixed fraction of a chunk late (spread evenly over the beds), so its
    #: chunks go out at its own moment within each tick rather than all beds' at the same instant.
    spread_within_tick: bool = False
    #: Real seconds per send slot. A chunk is never sent before its acquisition end (its last sample exists
    #: only then); the chunks whose acquisition ends fall in the same slot go out together at the slot's end,
    #: so a chunk is sent at most ``slot_s`` after its acquisition end (on average half of that). Slots count
    #: from each tick's start, so beds without a phase (no ``spread_within_tick``) are never delayed. The
    #: delay is honest downstream: latency is measured from the acquisition time carried in the chunk.
    #: It turns 1,000 per-bed wake-ups a second (1,000 spread beds) into at most ``1 / slot_s``, and lets the
    #: producer put a slot's chunks into one request. 0 = every bed at its own moment (no coalescing).
    slot_s: float = DEFAULT_SLOT_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(self.events))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if not isinstance(self.n_beds, int) or self.n_beds < 1:
            raise ConfigError(f"n_beds must be a whole number >= 1, got {self.n_beds!r}")
        if self.source not in SOURCE_KINDS:
            raise ConfigError(f"unknown source {self.source!r}; expected one of {', '.join(SOURCE_KINDS)}")
        if not _finite(self.chunk_s) or not MIN_CHUNK_S <= self.chunk_s <= MAX_CHUNK_S:
            raise ConfigError(f"chunk_s must be between {MIN_CHUNK_S} and {MAX_CHUNK_S} s, got {self.chunk_s!r}")
        if not _finite(self.speed) or self.speed <= 0:
            raise ConfigError(f"speed must be > 0 (2 = twice real time), got {self.speed!r}")
        fs = self.sample_rate_hz
        if not _finite(fs) or not float(fs).is_integer() or not 50 <= fs <= 2000:
            raise ConfigError(f"sample_rate_hz must be a whole number of Hz in [50, 2000], got {fs!r}")
        if not _finite(self.duration_s) or self.duration_s * fs < 1:
            raise ConfigError(f"duration_s must be a finite number of seconds > 0, got {self.duration_s!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0, got {self.seed!r}")
        if self.start_time_s is not None and (not _finite(self.start_time_s) or self.start_time_s < 0):
            raise ConfigError(f"start_time_s must be a Unix time >= 0, got {self.start_time_s!r}")
        if not isinstance(self.stagger_ticks, int) or not 1 <= self.stagger_ticks <= 3600:
            raise ConfigError(f"stagger_ticks must be a whole number in [1, 3600], got {self.stagger_ticks!r}")
        if not _finite(self.slot_s) or not 0 <= self.slot_s <= MAX_SLOT_S:
            raise ConfigError(f"slot_s must be between 0 and {MAX_SLOT_S} s, got {self.slot_s!r}")
        if not _finite(self.synthetic_af_fraction) or not 0 <= self.synthetic_af_fraction <= 1:
            raise ConfigError(f"synthetic_af_fraction must be in [0, 1], got {self.synthetic_af_fraction!r}")
        for bed in (self.bed_id(1), self.bed_id(self.n_beds)):
            if not BED_ID_RE.match(bed):
                raise ConfigError(f"bed_id_prefix {self.bed_id_prefix!r} gives the invalid bed id {bed!r}")
        beds = set(self.bed_ids)
        for ev in self.events:
            if not isinstance(ev, Event):
                raise ConfigError(f"events must be Event objects (see parse_event), got {ev!r}")
            if ev.bed_id not in beds:
                last = self.bed_id(self.n_beds)
                raise ConfigError(f"event {ev.spec()} names {ev.bed_id}, but the beds are {self.bed_id(1)}..{last}")
            if ev.start_s >= self.duration_s:
                raise ConfigError(f"event {ev.spec()} starts at or after the end of the run ({self.duration_s:g} s)")

    def bed_id(self, number: int) -> str:
        """The id of bed ``number`` (1-based): ``bed-001``, ``bed-002``, ..."""
        return f"{self.bed_id_prefix}{number:03d}"

    @property
    def bed_ids(self) -> tuple[str, ...]:
        return tuple(self.bed_id(i) for i in range(1, self.n_beds + 1))

    @property
    def total_samples(self) -> int:
        """Samples each bed sends over the run."""
        return max(1, round(self.duration_s * self.sample_rate_hz))


@dataclass(frozen=True, slots=True)
class SimulatorStats:
    """What a run did; lags are in real (wall-clock) seconds, behind each send's scheduled moment (its slot's
    end, which is itself up to ``slot_s`` after the chunks' acquisition end)."""

    chunks_sent: dict[str, int]
    dropped: int
    duplicated: int
    reordered: int
    ticks: int
    samples_per_bed: int
    max_lag_s: float
    late_ticks: int
    wall_s: float
    build_s_mean: float
    build_s_max: float
    sources: dict[str, str] = field(default_factory=dict)
    #: Moments at which chunks were sent (each one wake-up of the simulator and one burst for the producer).
    send_slots: int = 0

    @property
    def total_sent(self) -> int:
        return sum(self.chunks_sent.values())


def chunk_edges(duration_s: float, chunk_s: float, sample_rate_hz: float) -> list[int]:
    """Sample indices where chunks start, plus the end: chunk ``k`` holds samples ``[edges[k], edges[k+1])``.

    Chunk ``k`` starts at the first sample at or after ``k * chunk_s``, so a chunk length that is not a whole
    number of samples (0.25 s at 250 Hz) alternates 62 and 63 samples; the last chunk stops at the duration.
    """
    total = max(1, round(duration_s * sample_rate_hz))
    per_chunk = chunk_s * sample_rate_hz
    n_chunks = max(1, math.ceil(total / per_chunk - 1e-9))
    edges = [min(total, math.ceil(k * per_chunk - 1e-6)) for k in range(n_chunks)]
    return [*edges, total]


def windows_expected(duration_s: float, window_s: float, hop_s: float, sample_rate_hz: float = 250.0) -> int:
    """Windows per bed of a clean run: windows end at sample counts ``k * hop`` with ``k * hop >= window``."""
    if window_s <= 0 or hop_s <= 0 or duration_s < 0:
        raise ValueError(f"window_s and hop_s must be > 0 and duration_s >= 0, got {window_s}, {hop_s}, {duration_s}")
    total = round(duration_s * sample_rate_hz)
    window = round(window_s * sample_rate_hz)
    hop = round(hop_s * sample_rate_hz)
    if hop < 1:
        raise ValueError(f"hop_s {hop_s} is shorter than one sample")
    return max(0, total // hop - math.ceil(window / hop) + 1)


class Simulator:
    """Sends every bed's chunks through ``send(bed_id, payload)`` (or its ``send_many``, one call per send slot),
    paced on ``clock``/``sleep`` (injectable)."""

    def __init__(
        self,
        config: SimulatorConfig,
        send: Send,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        *,
        sources: Sequence[Source] | None = None,
    ) -> None:
        self.config = config
        self._send = send
        self._clock = clock
        self._sleep = sleep
        self.bed_ids = config.bed_ids
        fs = config.sample_rate_hz
        if sources is None:
            sources = make_sources(
                config.source,
                config.n_beds,
                config.data_dir,
                config.seed,
                sample_rate_hz=fs,
                synthetic_af_fraction=config.synthetic_af_fraction,
            )
        if len(sources) != config.n_beds:
            raise ConfigError(f"{len(sources)} sources for {config.n_beds} beds")
        for src in sources:
            if src.sample_rate_hz != fs:
                raise ConfigError(f"source {src.describe()} runs at {src.sample_rate_hz} Hz, not {fs} Hz")
        by_bed: dict[str, list[Event]] = {}
        for ev in config.events:
            by_bed.setdefault(ev.bed_id, []).append(ev)
        af_library: AfLibrary | None = None
        if any(ev.kind == "af" for ev in config.events):
            if config.data_dir is None or not (config.data_dir / "mitdb").is_dir():
                raise DataNotFoundError.for_folder("MIT-BIH records for af events", config.data_dir)
            af_library = AfLibrary(config.data_dir / "mitdb", fs)
        self.sources: list[Source] = list(sources)
        self._wire: dict[str, WireEffects] = {}
        for i, bed in enumerate(self.bed_ids):
            evs = by_bed.get(bed, [])
            signal = [e for e in evs if e.kind in SAMPLE_EVENT_KINDS]
            wire = [e for e in evs if e.kind in WIRE_EVENT_KINDS]
            if signal:
                self.sources[i] = EventSource(
                    self.sources[i], signal, seed=bed_seed(config.seed, i, 1), af_library=af_library
                )
            if wire:
                self._wire[bed] = WireEffects(wire, fs)
        self.edges = chunk_edges(config.duration_s, config.chunk_s, fs)
        self.offsets = [i % config.stagger_ticks for i in range(config.n_beds)]
        # golden-ratio spacing: beds adjacent in number are far apart in phase
        self.phases_s = [
            ((i * 0.6180339887) % 1.0) * config.chunk_s if config.spread_within_tick else 0.0
            for i in range(config.n_beds)
        ]
        late = max(self.offsets)
        #: edges of the ticks (chunk ``c`` of a bed that starts ``o`` ticks late goes out at tick ``o + c``)
        self.tick_edges = chunk_edges(config.duration_s + late * config.chunk_s, config.chunk_s, fs)
        self._next_seq = 0
        self._prepared = False
        self._leads: list[tuple[str, ...]] = []
        self._gains: list[float] = []
        self.start_time_s: float | None = config.start_time_s

    @property
    def n_ticks(self) -> int:
        return len(self.tick_edges) - 1

    def prepare(self) -> None:
        """Load what every bed reads in its first ``PREWARM_S`` seconds (disk reads, resampling) before the clock
        starts."""
        if not self._prepared:
            ahead_s = min(self.config.duration_s, PREWARM_S)
            for src in self.sources:
                src.warm(ahead_s)
            self._leads = [src.leads for src in self.sources]
            self._gains = [src.gain for src in self.sources]
            self._prepared = True

    def _encode(self, i: int, c: int, t0_tick_s: float) -> bytes:
        """Bed ``i``'s chunk ``c`` (read from its source, which must be at that chunk), encoded."""
        lo, hi = self.edges[c], self.edges[c + 1]
        chunk = WaveformChunk(
            self.bed_ids[i],
            c,
            t0_tick_s + self.phases_s[i],
            self.config.sample_rate_hz,
            self._leads[i],
            self.sources[i].read(hi - lo),
            self._gains[i],
        )
        return encode_chunk(chunk)

    def build_tick(self, seq: int) -> list[tuple[str, bytes]]:
        """Encode chunk ``seq`` of every bed, after wire events, as ``(bed_id, payload)`` in sending order.

        Ticks must be built in order (0, 1, 2, ...): sources and wire events are stateful. :meth:`run` builds
        the same chunks bed by bed, each just before its send slot.
        """
        if seq != self._next_seq:
            raise ValueError(f"tick {seq} built out of order; expected {self._next_seq}")
        self.prepare()
        if self.start_time_s is None:
            self.start_time_s = self._clock()
        t0_s = self.start_time_s + self.tick_edges[seq] / self.config.sample_rate_hz
        wire = self._wire
        out: list[tuple[str, bytes]] = []
        n_chunks = len(self.edges) - 1
        for i, (bed, offset) in enumerate(zip(self.bed_ids, self.offsets, strict=True)):
            c = seq - offset
            if not 0 <= c < n_chunks:
                continue
            payload = self._encode(i, c, t0_s)
            effects = wire.get(bed)
            if effects is None:
                out.append((bed, payload))
            else:
                lo, hi = self.edges[c], self.edges[c + 1]
                out.extend((bed, p) for p in effects.route(lo, hi, payload))
        self._next_seq = seq + 1
        return out

    def flush_held(self) -> list[tuple[str, bytes]]:
        """Chunks that wire events still hold back (a reorder cut by the end of the run)."""
        return [(bed, p) for bed, effects in self._wire.items() for p in effects.flush()]

    def tick_sends(self, seq: int) -> list[tuple[float, list[int]]]:
        """When tick ``seq``'s chunks go out: ``(real seconds after the tick's end, bed indices)`` in time order.

        Bed ``i``'s chunk is acquired until ``phase / speed`` real seconds after the tick's end (give or take a
        sample: a chunk length that is not a whole number of samples makes a staggered bed's chunk a sample
        longer or shorter than the tick). It goes out at the end of the ``slot_s`` slot, counted from the
        tick's end, that holds that moment: never before it, less than one slot after it. Beds of one slot
        keep their acquisition order. With ``slot_s = 0`` each chunk goes out at its exact acquisition end.
        """
        cfg = self.config
        fs, slot, speed = cfg.sample_rate_hz, cfg.slot_s, cfg.speed
        edges, n_chunks = self.edges, len(self.edges) - 1
        n_tick = self.tick_edges[seq + 1] - self.tick_edges[seq]
        ends: list[tuple[float, int]] = []
        for i, (offset, phase_s) in enumerate(zip(self.offsets, self.phases_s, strict=True)):
            c = seq - offset
            if 0 <= c < n_chunks:
                ends.append((((edges[c + 1] - edges[c] - n_tick) / fs + phase_s) / speed, i))
        ends.sort()
        slots: dict[float, list[int]] = {}
        for end, i in ends:
            if slot > 0:
                k = math.ceil(end / slot)
                while k * slot < end:  # rounding in the division must never move a send before its data
                    k += 1
                end = k * slot
            slots.setdefault(end, []).append(i)
        return list(slots.items())

    def run(self, progress: bool = False) -> SimulatorStats:
        """Send the whole run: each chunk goes out when the clock reaches its acquisition end, scaled by
        ``speed`` (chunk ``k`` of an unstaggered bed at the end of tick ``k``); with ``slot_s`` > 0, at the end of
        the slot holding that moment, together with the other chunks acquired in that slot (see
        :meth:`tick_sends`). That adds less than ``slot_s`` of delay, and only to beds with a phase
        (``spread_within_tick``).

        Each slot's chunks are built just before it, so building never delays a send. Sends are never early;
        a slot reached late (sending or building fell behind) goes out at once and counts as lag. A ``send``
        with a ``send_many`` method gets each slot's chunks in one call.
        """
        cfg = self.config
        fs = cfg.sample_rate_hz
        self.prepare()
        real_start = self._clock()
        if self.start_time_s is None:
            self.start_time_s = real_start
        sent = dict.fromkeys(self.bed_ids, 0)
        max_lag_s = 0.0
        late_seqs: set[int] = set()
        n_slots = 0
        send, clock, sleep = self._send, self._clock, self._sleep
        send_many: Callable[[list[tuple[str, bytes]]], None] | None = getattr(send, "send_many", None)
        bed_ids, offsets, wire, edges = self.bed_ids, self.offsets, self._wire, self.edges
        n_chunks = len(edges) - 1
        first_seq = self._next_seq
        build_s = dict.fromkeys(range(first_seq, self.n_ticks), 0.0)
        run_s = self.tick_edges[-1] / fs
        # (send time, tick, slot of the tick, beds), merged over ticks in time order: with slots longer than a
        # (sped-up) tick, a tick's last slots interleave with the next tick's first ones.
        pending: list[tuple[float, int, int, list[int]]] = []
        upcoming: list[tuple[float, int, int, list[int]]] = []
        next_seq = first_seq
        with tqdm(total=run_s, unit="s", desc="simulate", disable=not progress, mininterval=0.5) as bar:
            while True:
                if not upcoming and next_seq < self.n_ticks:
                    due = real_start + self.tick_edges[next_seq + 1] / fs / cfg.speed
                    upcoming = [
                        (due + lag, next_seq, j, beds) for j, (lag, beds) in enumerate(self.tick_sends(next_seq))
                    ]
                    bar.update((self.tick_edges[next_seq + 1] - self.tick_edges[next_seq]) / fs)
                    next_seq += 1
                if upcoming and (not pending or upcoming[0][0] <= pending[0][0]):
                    for item in upcoming:
                        heapq.heappush(pending, item)
                    upcoming = []
                    continue
                if not pending:
                    if next_seq < self.n_ticks:
                        continue
                    break
                at, seq, _, beds = heapq.heappop(pending)
                slot_sends = [(seq, beds)]
                # a tick's last slot and the next tick's first can fall on the same moment: one wake-up for both
                while pending and pending[0][0] - at < _SAME_MOMENT_S:
                    at2, seq2, _, beds2 = heapq.heappop(pending)
                    at = max(at, at2)
                    slot_sends.append((seq2, beds2))
                batch: list[tuple[str, bytes]] = []
                for seq, beds in slot_sends:
                    b0 = time.perf_counter()
                    t0_tick_s = self.start_time_s + self.tick_edges[seq] / fs
                    for i in beds:
                        c = seq - offsets[i]
                        bed = bed_ids[i]
                        payload = self._encode(i, c, t0_tick_s)
                        effects = wire.get(bed)
                        if effects is None:
                            batch.append((bed, payload))
                            continue
                        batch.extend((bed, p) for p in effects.route(edges[c], edges[c + 1], payload))
                        if c == n_chunks - 1:  # this bed's last chunk: release what a reorder still holds
                            batch.extend((bed, p) for p in effects.flush())
                    build_s[seq] += time.perf_counter() - b0
                if not batch:
                    continue
                now = clock()
                if now < at:
                    sleep(at - now)
                    now = clock()
                elif now > at:
                    late_seqs.update(seq for seq, _ in slot_sends)
                max_lag_s = max(max_lag_s, now - at)
                n_slots += 1
                if send_many is not None:
                    send_many(batch)
                else:
                    for bed, payload in batch:
                        send(bed, payload)
                for bed, _ in batch:
                    sent[bed] += 1
        self._next_seq = self.n_ticks
        builds = list(build_s.values()) or [0.0]
        wire_effects = self._wire.values()
        return SimulatorStats(
            chunks_sent=sent,
            dropped=sum(w.dropped for w in wire_effects),
            duplicated=sum(w.duplicated for w in wire_effects),
            reordered=sum(w.reordered for w in wire_effects),
            ticks=self.n_ticks,
            samples_per_bed=self.edges[-1],
            max_lag_s=max_lag_s,
            late_ticks=len(late_seqs),
            wall_s=clock() - real_start,
            build_s_mean=sum(builds) / max(1, self.n_ticks),
            build_s_max=max(builds),
            sources={bed: src.describe() for bed, src in zip(self.bed_ids, self.sources, strict=True)},
            send_slots=n_slots,
        )
