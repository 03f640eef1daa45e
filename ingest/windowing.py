"""Per-bed ring buffers that turn a chunk stream into overlapping prediction windows.

Sample positions are counted from the start of the bed's stream: the first chunk seen, ``seq`` of ``n``
samples, starts at ``seq * n`` and every later chunk follows the one before it, so chunk lengths may vary
(0.25 s at 250 Hz alternates 62 and 63 samples). Windows end at multiples of the hop (``k * hop_n`` samples
with ``k * hop_n >= window_n``), so a worker that restarts on a stream of fixed-length chunks cuts the same
windows. Duplicates are dropped by sequence number, whatever their leads; a chunk that arrives early is held for up to
``max_reorder_chunks`` later chunks, after which the missing span is declared a gap: its samples are marked
invalid and every window that overlaps them is emitted as incomplete instead of being stitched. A gap longer
than ``MAX_FILLED_GAP_S`` (a monitor off for a long time, or a sequence number that leaps ahead) costs no more
than a short one: the windows that overlap its edges are emitted, those wholly inside it are skipped.

A sequence number is trusted only as far as the chunk's own clock agrees with it: a chunk that claims to be
``k`` chunks ahead must be stamped at least half of those ``k`` chunks' time after the bed's last sample
(less ``SEQ_CLOCK_SLACK_S``). Otherwise it is refused with :class:`~ingest.errors.DecodeError`
``implausible-seq`` before it touches the bed's state, so a forged far-ahead sequence number under a real bed's
key cannot make the bed's genuine chunks look like duplicates and silence it. The other way round, a chunk whose
sequence number was seen already but which is stamped clearly after the bed's newest sample is not a duplicate:
the monitor restarted its numbering (a reboot), or the numbers before were forged; the buffer starts again from
it (outcome ``RESET``), as on a lead change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ingest.errors import DecodeError
from ingest.schemas import WaveformChunk

#: Gaps up to this long are filled sample by sample; beyond it, windows wholly inside the gap are skipped, so
#: the work a gap costs is bounded whatever the sequence numbers say.
MAX_FILLED_GAP_S = 300.0

#: A chunk ahead of the expected one may be stamped this much earlier than half the time its sequence number
#: claims has passed (clock jitter, a short chunk), and no more.
SEQ_CLOCK_SLACK_S = 2.0


class ChunkOutcome(StrEnum):
    """What the windower did with a chunk."""

    ACCEPTED = "accepted"
    HELD = "held"  # arrived ahead of a missing one; waits for it
    DUPLICATE = "duplicate"  # seq already seen (or given up on)
    RESET = "reset"  # the lead set changed, or the numbering restarted: the buffer started again


@dataclass(frozen=True, slots=True)
class Window:
    """``window_n`` samples of one bed ending at ``end_index`` (exclusive), in millivolts."""

    bed_id: str
    leads: tuple[str, ...]
    samples: np.ndarray  # (n_leads, window_n) float32 mV; NaN where samples are missing
    sample_rate_hz: float
    end_index: int
    end_s: float  # acquisition time of the last sample
    window_s: float
    seq_last: int
    missing_samples: int

    @property
    def complete(self) -> bool:
        return self.missing_samples == 0


@dataclass(slots=True)
class WindowerStats:
    """Counters of one bed's stream."""

    accepted: int = 0
    duplicates: int = 0
    held: int = 0
    gaps: int = 0
    missing_chunks: int = 0
    resets: int = 0
    windows: int = 0
    incomplete_windows: int = 0


@dataclass(slots=True)
class _Pending:
    chunk: WaveformChunk
    mv: np.ndarray


class BedWindower:
    """Ring buffer and window cutter for a single bed."""

    def __init__(self, bed_id: str, window_s: float, hop_s: float, sample_rate_hz: float,
                 max_reorder_chunks: int = 2) -> None:
        if window_s <= 0 or hop_s <= 0:
            raise ValueError("window_s and hop_s must be positive")
        self.bed_id = bed_id
        self.window_s = window_s
        self.hop_s = hop_s
        self.sample_rate_hz = sample_rate_hz
        self.window_n = round(window_s * sample_rate_hz)
        self.hop_n = round(hop_s * sample_rate_hz)
        self.max_reorder_chunks = max_reorder_chunks
        self.stats = WindowerStats()
        self._leads: tuple[str, ...] | None = None
        self._last_n = 0
        self._buf = np.empty((0, self.window_n), dtype=np.float32)
        self._next_seq = -1
        self._first_index = 0
        self._written = 0  # absolute index one past the last written sample
        self._t_ref: tuple[int, float] = (0, 0.0)  # (absolute index, its acquisition time)
        self._pending: dict[int, _Pending] = {}

    def push(self, chunk: WaveformChunk) -> tuple[ChunkOutcome, list[Window]]:
        """Feed one decoded chunk; returns what happened to it and the windows it completed."""
        # Checked before the lead set: a late copy of a chunk from before a lead change must not restart the
        # buffer (that re-cut windows already emitted and dropped the current stream's last window of samples).
        renumbered = False
        if self._leads is not None and (chunk.seq < self._next_seq or chunk.seq in self._pending):
            renumbered = chunk.seq < self._next_seq and chunk.t0_s > self._next_t() + SEQ_CLOCK_SLACK_S
            if not renumbered:
                self.stats.duplicates += 1
                return ChunkOutcome.DUPLICATE, []
        elif self._leads is not None and chunk.seq > self._next_seq:  # also before a lead change: no short cut
            self._check_clock(chunk)
        mv = chunk.millivolts()
        outcome = ChunkOutcome.ACCEPTED
        if self._leads != chunk.leads or renumbered:
            if self._leads is not None:
                self.stats.resets += 1
                outcome = ChunkOutcome.RESET
            self._restart(chunk)
        windows: list[Window] = []
        if chunk.seq > self._next_seq:
            self._pending[chunk.seq] = _Pending(chunk, mv)
            self.stats.held += 1
            if len(self._pending) <= self.max_reorder_chunks:
                return ChunkOutcome.HELD, []
            first = min(self._pending)
            missing = first - self._next_seq
            self.stats.gaps += 1
            self.stats.missing_chunks += missing
            # The missing chunks are assumed as long as the last one received.
            windows += self._write_gap(missing * self._last_n, self._next_seq)
            self._next_seq = first
            outcome = ChunkOutcome.HELD
        else:
            windows += self._write(mv, chunk.seq, chunk)
            self._next_seq = chunk.seq + 1
            self.stats.accepted += 1
        while self._next_seq in self._pending:
            p = self._pending.pop(self._next_seq)
            windows += self._write(p.mv, p.chunk.seq, p.chunk)
            self._next_seq += 1
            self.stats.accepted += 1
        return outcome, windows

    def _next_t(self) -> float:
        """Acquisition time of the next sample the buffer expects."""
        ref_index, ref_t = self._t_ref
        return ref_t + (self._written - ref_index) / self.sample_rate_hz

    def _check_clock(self, chunk: WaveformChunk) -> None:
        """Refuse a chunk whose sequence number runs ahead of its own time stamp (see the module docstring)."""
        next_t = self._next_t()
        ahead = chunk.seq - self._next_seq
        claimed_s = ahead * self._last_n / self.sample_rate_hz
        if chunk.t0_s < next_t + 0.5 * claimed_s - SEQ_CLOCK_SLACK_S:
            raise DecodeError(
                "implausible-seq",
                f"seq {chunk.seq} is {ahead} chunks ({claimed_s:.3g} s) ahead of bed {self.bed_id!r}'s next "
                f"({self._next_seq}) but stamped {chunk.t0_s - next_t:+.3g} s from its next sample",
            )

    def _restart(self, chunk: WaveformChunk) -> None:
        self._leads = chunk.leads
        self._last_n = chunk.n_samples
        self._buf = np.full((len(chunk.leads), self.window_n), np.nan, dtype=np.float32)
        self._next_seq = chunk.seq
        self._first_index = chunk.seq * chunk.n_samples
        self._written = self._first_index
        self._t_ref = (self._first_index, chunk.t0_s)
        self._pending.clear()

    def _write_gap(self, n_missing: int, seq: int) -> list[Window]:
        """Mark ``n_missing`` samples missing; a gap longer than ``MAX_FILLED_GAP_S`` is not filled in full."""
        n_leads = len(self._leads or ())
        max_filled = max(self.window_n, round(MAX_FILLED_GAP_S * self.sample_rate_hz))
        if n_missing <= max_filled:
            return self._write(np.full((n_leads, n_missing), np.nan, dtype=np.float32), seq, None)
        # One window of NaN emits the windows that overlap the gap's start and leaves the whole ring NaN, which
        # is then right at any position: jump to the gap's end, skipping the windows wholly inside the gap.
        windows = self._write(np.full((n_leads, self.window_n), np.nan, dtype=np.float32), seq, None)
        self._written += n_missing - self.window_n
        return windows

    def _write(self, mv: np.ndarray, seq: int, chunk: WaveformChunk | None) -> list[Window]:
        start = self._written
        if chunk is not None:
            self._t_ref = (start, chunk.t0_s)
            self._last_n = chunk.n_samples
        n = mv.shape[1]
        windows: list[Window] = []
        pos = 0
        while pos < n:
            abs_pos = start + pos
            next_boundary = (abs_pos // self.hop_n + 1) * self.hop_n
            take = min(n - pos, next_boundary - abs_pos)
            self._put(mv[:, pos : pos + take], abs_pos)
            pos += take
            end = abs_pos + take
            if end % self.hop_n == 0 and end >= self.window_n and end - self.window_n >= self._first_index:
                windows.append(self._cut(end, seq))
        self._written = start + n
        return windows

    def _put(self, block: np.ndarray, abs_pos: int) -> None:
        cap = self.window_n
        n = block.shape[1]
        if n > cap:  # a hop longer than the window: only the block's last window of samples can be kept
            block, abs_pos, n = block[:, n - cap :], abs_pos + n - cap, cap
        i = abs_pos % cap
        first = min(n, cap - i)
        self._buf[:, i : i + first] = block[:, :first]
        if first < n:
            self._buf[:, : n - first] = block[:, first:]

    def _cut(self, end: int, seq: int) -> Window:
        i = end % self.window_n
        samples = np.concatenate([self._buf[:, i:], self._buf[:, :i]], axis=1)
        missing = int(np.isnan(samples[0]).sum())
        ref_index, ref_t = self._t_ref
        end_s = ref_t + (end - 1 - ref_index) / self.sample_rate_hz
        self.stats.windows += 1
        if missing:
            self.stats.incomplete_windows += 1
        return Window(
            bed_id=self.bed_id,
            leads=self._leads or (),
            samples=samples,
            sample_rate_hz=self.sample_rate_hz,
            end_index=end,
            end_s=end_s,
            window_s=self.window_s,
            seq_last=seq,
            missing_samples=missing,
        )


class Windower:
    """All beds of one worker: one :class:`BedWindower` per bed id, created on first sight.

    At most ``max_beds`` beds are tracked (``None``: no limit): a chunk of a new bed beyond that is refused with
    ``DecodeError("too-many-beds")``, so a stream of made-up bed ids cannot exhaust the worker's memory (each bed
    holds one window of samples). Beds that stopped streaming are dropped with :meth:`drop`.
    """

    def __init__(self, window_s: float, hop_s: float, sample_rate_hz: float, max_reorder_chunks: int = 2,
                 max_beds: int | None = None) -> None:
        self.window_s = window_s
        self.hop_s = hop_s
        self.sample_rate_hz = sample_rate_hz
        self.max_reorder_chunks = max_reorder_chunks
        self.max_beds = max_beds
        self.beds: dict[str, BedWindower] = {}
        #: beds dropped with :meth:`drop`, and their counters, so that totals do not go backwards
        self.dropped = 0
        self._dropped_stats = WindowerStats()

    def push(self, chunk: WaveformChunk) -> tuple[ChunkOutcome, list[Window]]:
        """Route a chunk to its bed's buffer."""
        bed = self.beds.get(chunk.bed_id)
        if bed is None:
            if self.max_beds is not None and len(self.beds) >= self.max_beds:
                raise DecodeError("too-many-beds", f"this worker already tracks {len(self.beds)} beds "
                                                   f"(HOLMES_MAX_BEDS); bed {chunk.bed_id!r} is not taken on")
            bed = BedWindower(chunk.bed_id, self.window_s, self.hop_s, self.sample_rate_hz, self.max_reorder_chunks)
            outcome, windows = bed.push(chunk)  # a first chunk it refuses leaves no empty bed behind
            self.beds[chunk.bed_id] = bed
            return outcome, windows
        return bed.push(chunk)

    def drop(self, bed_id: str) -> bool:
        """Forget a bed's buffer (its partition moved away, or it stopped streaming); whether it was tracked."""
        bed = self.beds.pop(bed_id, None)
        if bed is None:
            return False
        self.dropped += 1
        _add_stats(self._dropped_stats, bed.stats)
        return True

    def totals(self) -> WindowerStats:
        """Counters summed over beds."""
        total = WindowerStats()
        _add_stats(total, self._dropped_stats)
        for bed in self.beds.values():
            _add_stats(total, bed.stats)
        return total


def _add_stats(total: WindowerStats, stats: WindowerStats) -> None:
    for name in WindowerStats.__slots__:  # type: ignore[attr-defined]
        setattr(total, name, getattr(total, name) + getattr(stats, name))
