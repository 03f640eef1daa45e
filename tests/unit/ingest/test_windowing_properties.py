"""Property tests of the windower: whatever order, duplication, loss or lead changes the chunks arrive with, it
never raises, windows have the right shape, end on the hop grid, hold real samples or NaN, and none comes twice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest.errors import DecodeError
from ingest.schemas import WaveformChunk
from ingest.windowing import BedWindower, ChunkOutcome, Window, Windower

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FS = 50.0  # a low rate keeps the arrays small; the windower's arithmetic does not depend on it
T0 = 1_700_000_000.0
LEAD_SETS = (("I",), ("I", "II"), ("II", "V5", "V1"))
#: Samples carry their stream position, so a window's content says where each sample came from.
MODULUS = 1_000_000


def value(position: np.ndarray, lead: int) -> np.ndarray:
    """The sample at absolute ``position`` of lead ``lead`` (exact in float32)."""
    return (position % MODULUS + 0.25 * lead).astype(np.float32)


def make_chunk(seq: int, n: int, leads: tuple[str, ...], bed: str = "bed-001") -> WaveformChunk:
    pos = np.arange(seq * n, (seq + 1) * n)
    samples = np.stack([value(pos, k) for k in range(len(leads))])
    return WaveformChunk(bed, seq, T0 + seq * n / FS, FS, leads, samples, 1.0)


@dataclass(frozen=True)
class Scenario:
    """A bed's true stream (consecutive sequence numbers from ``first_seq``) and what the wire did to it."""

    window_s: float
    hop_s: float
    max_reorder: int
    n: int
    first_seq: int
    wire: tuple[tuple[int, tuple[str, ...]], ...]  # (seq, leads) in arrival order

    def windower(self) -> BedWindower:
        return BedWindower("bed-001", self.window_s, self.hop_s, FS, self.max_reorder)


@st.composite
def scenarios(draw: st.DrawFn, max_chunks: int = 60) -> Scenario:
    """Chunks of ``n`` samples with lead changes, then dropped, duplicated, swapped, delayed or leaping ones."""
    n = draw(st.sampled_from([10, 25, 50, 60]))
    count = draw(st.integers(1, max_chunks))
    first = draw(st.one_of(st.integers(0, 100), st.integers(0, 2**62)))
    changes = set(draw(st.lists(st.integers(1, count), max_size=3)))
    lead_set = draw(st.sampled_from(LEAD_SETS))
    stream: list[tuple[int, tuple[str, ...]]] = []
    for i in range(count):
        if i in changes:
            lead_set = draw(st.sampled_from(LEAD_SETS))
        stream.append((first + i, lead_set))
    wire: list[tuple[int, tuple[str, ...]]] = []
    for item in stream:
        action = draw(st.sampled_from(["send"] * 6 + ["drop", "duplicate", "swap", "delay", "leap"]))
        if action == "drop":
            continue
        wire.append(item)
        if action == "duplicate":
            wire.append(item)
        elif action == "swap" and len(wire) >= 2:
            wire[-1], wire[-2] = wire[-2], wire[-1]
        elif action == "delay":  # re-sent much later, as a monitor replaying its buffer would
            wire.insert(len(wire) + draw(st.integers(0, 10)), item)
        elif action == "leap":  # a chunk from far ahead (a monitor off for hours, or a hostile producer)
            wire.append((item[0] + draw(st.sampled_from([100, 10**4, 10**9, 2**61])), item[1]))
    return Scenario(
        window_s=draw(st.sampled_from([1.0, 2.0, 4.0])),
        hop_s=draw(st.sampled_from([0.5, 1.0, 2.0, 5.0])),  # 5 s: longer than some windows
        max_reorder=draw(st.integers(0, 3)),
        n=n,
        first_seq=first,
        wire=tuple(wire),
    )


def check_windows(w: BedWindower, windows: list[Window], leads: tuple[str, ...]) -> None:
    """Shape, hop grid and content of windows just cut, given the bed's current lead set."""
    for win in windows:
        assert win.bed_id == "bed-001" and win.leads == leads
        assert win.samples.shape == (len(leads), w.window_n) and win.samples.dtype == np.float32
        assert win.end_index % w.hop_n == 0 and win.end_index >= w.window_n
        assert np.isfinite(win.end_s)
        missing = np.isnan(win.samples)
        # a sample is missing in every lead or in none
        assert (missing == missing[0]).all()
        assert win.missing_samples == int(missing[0].sum())
        assert win.complete == (win.missing_samples == 0)
        positions = np.arange(win.end_index - w.window_n, win.end_index)
        for k in range(len(leads)):
            real = ~missing[k]
            np.testing.assert_array_equal(win.samples[k, real], value(positions[real], k))


def run(s: Scenario) -> list[Window]:
    """Push the scenario's chunks, checking each outcome and each window as it comes."""
    w = s.windower()
    out: list[Window] = []
    for seq, leads in s.wire:
        outcome, windows = w.push(make_chunk(seq, s.n, leads))
        assert isinstance(outcome, ChunkOutcome)
        check_windows(w, windows, leads)
        out += windows
    stats = w.stats
    assert stats.windows == len(out) and stats.incomplete_windows == sum(not x.complete for x in out)
    return out


@FAST
@given(scenarios())
@example(Scenario(1.0, 0.5, 2, 10, 0, tuple((s, ("I",)) for s in [0, 1, 2, 2**61, 2**61 + 1, 2**61 + 2, 2**61 + 3])))
def test_any_arrival_order_gives_well_formed_windows_once(s: Scenario) -> None:
    windows = run(s)
    ends = [x.end_index for x in windows]
    assert len(ends) == len(set(ends)), "a window was emitted twice"


@FAST
@given(scenarios())
def test_without_loss_every_window_is_complete(s: Scenario) -> None:
    """The same chunks, every one delivered in order, some twice: all windows complete, none missing."""
    delivered = sorted({seq for seq, _ in s.wire if seq - s.first_seq < 1000})
    if not delivered:
        return
    seqs = range(delivered[0], delivered[-1] + 1)
    scenario = Scenario(s.window_s, s.hop_s, s.max_reorder, s.n, s.first_seq,
                        tuple((q, ("I",)) for q in seqs for _ in range(1 + q % 2)))
    windows = run(scenario)
    assert all(x.complete for x in windows)
    w = scenario.windower()
    first, last = delivered[0] * s.n, (delivered[-1] + 1) * s.n
    start = -(-(first + w.window_n) // w.hop_n) * w.hop_n  # the first hop boundary with a whole window after first
    expected = list(range(start, last + 1, w.hop_n))
    assert [x.end_index for x in windows] == expected


@st.composite
def mixed_streams(draw: st.DrawFn) -> list[WaveformChunk]:
    """Several beds interleaved, chunk lengths varying per chunk (0.25 s at 250 Hz is 62 or 63 samples)."""
    chunks = []
    for bed in ("a", "b", "c")[: draw(st.integers(1, 3))]:
        seq = draw(st.integers(0, 10**6))
        for _ in range(draw(st.integers(0, 40))):
            seq += draw(st.sampled_from([1, 1, 1, 1, 0, 2, 3, -1, 10**5]))
            leads = draw(st.sampled_from(LEAD_SETS))
            n = draw(st.integers(1, 120))
            chunks.append(WaveformChunk(bed, max(0, seq), T0 + seq, FS, leads,
                                        np.zeros((len(leads), n), np.int16), 200.0))
    return draw(st.permutations(chunks))


@FAST
@given(mixed_streams(), st.sampled_from([(2.0, 1.0), (4.0, 1.0), (1.0, 3.0)]))
def test_beds_interleaved_with_any_chunk_lengths_never_fail(chunks: list[WaveformChunk],
                                                          window: tuple[float, float]) -> None:
    windower = Windower(window[0], window[1], FS, max_reorder_chunks=2)
    seen: set[tuple[str, tuple[str, ...], int]] = set()
    for chunk in chunks:
        try:
            _, windows = windower.push(chunk)
        except DecodeError as exc:  # only a sequence number its own time stamp does not support is refused
            assert exc.reason == "implausible-seq"
            assert chunk.seq > windower.beds[chunk.bed_id]._next_seq
            continue
        bed = windower.beds[chunk.bed_id]
        for win in windows:
            assert win.bed_id == chunk.bed_id and win.samples.shape == (len(win.leads), bed.window_n)
            assert win.end_index % bed.hop_n == 0
            assert not np.isinf(win.samples).any()
            key = (win.bed_id, win.leads, win.end_index)
            assert key not in seen, "a window was emitted twice"
            seen.add(key)
    assert windower.totals().windows == len(seen)
