"""Windows are cut at hop boundaries by sequence number; gaps, duplicates and reordering are handled."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.errors import DecodeError
from ingest.schemas import WaveformChunk
from ingest.windowing import BedWindower, ChunkOutcome, Windower

FS = 250.0
T0 = 1_700_000_000.0


def make_chunk(seq: int, n: int = 250, bed: str = "bed-001", leads: tuple[str, ...] = ("I",)) -> WaveformChunk:
    # Sample value = absolute sample index, so a window's content says exactly where it came from.
    idx = np.arange(seq * n, (seq + 1) * n)
    samples = np.tile((idx % 30000).astype(np.int16), (len(leads), 1))
    return WaveformChunk(bed, seq, T0 + seq * n / FS, FS, leads, samples, 1.0)


def feed(w: BedWindower | Windower, seqs: list[int], n: int = 250) -> list:
    out = []
    for s in seqs:
        out += w.push(make_chunk(s, n))[1]
    return out


@pytest.mark.parametrize(("window_s", "hop_s", "duration_s", "expected"),
                         [(10, 5, 60, 11), (30, 5, 60, 7), (10, 2.5, 20, 5), (10, 5, 9, 0)])
def test_window_count_and_boundaries(window_s: float, hop_s: float, duration_s: int, expected: int) -> None:
    w = BedWindower("bed-001", window_s, hop_s, FS)
    windows = feed(w, list(range(duration_s)))
    assert len(windows) == expected
    for win in windows:
        assert win.complete
        assert win.samples.shape == (1, int(window_s * FS))
        assert win.end_index % int(hop_s * FS) == 0
        np.testing.assert_array_equal(win.samples[0], np.arange(win.end_index - w.window_n, win.end_index))
        assert win.end_s == pytest.approx(T0 + (win.end_index - 1) / FS)


def test_half_second_chunks_give_the_same_windows() -> None:
    whole = feed(BedWindower("b", 10, 5, FS), list(range(30)))
    halves = feed(BedWindower("b", 10, 5, FS), list(range(60)), n=125)
    assert [x.end_index for x in halves] == [x.end_index for x in whole]
    for x, y in zip(halves, whole, strict=True):
        np.testing.assert_array_equal(x.samples, y.samples)
        assert x.end_s == pytest.approx(y.end_s)


def test_quarter_second_chunks_of_62_and_63_samples_follow_each_other() -> None:
    w = BedWindower("b", 10, 5, FS)
    edges = [int(np.ceil(k * 62.5 - 1e-6)) for k in range(121)]
    windows = []
    for seq, (lo, hi) in enumerate(zip(edges, edges[1:], strict=False)):
        samples = (np.arange(lo, hi) % 30000).astype(np.int16)[None, :]
        windows += w.push(WaveformChunk("b", seq, T0 + lo / FS, FS, ("I",), samples, 1.0))[1]
    assert [x.end_index for x in windows] == [2500, 3750, 5000, 6250, 7500]
    for x in windows:
        np.testing.assert_array_equal(x.samples[0], np.arange(x.end_index - 2500, x.end_index))
        assert x.end_s == pytest.approx(T0 + (x.end_index - 1) / FS)


def test_duplicates_are_dropped() -> None:
    w = BedWindower("bed-001", 10, 5, FS)
    windows = feed(w, [0, 1, 1, 2, 2, 2] + list(range(3, 20)))
    assert w.stats.duplicates == 3
    assert len(windows) == 3 and all(x.complete for x in windows)


def test_reordered_chunks_are_put_back_in_order() -> None:
    w = BedWindower("bed-001", 10, 5, FS, max_reorder_chunks=2)
    seqs = list(range(20))
    seqs[5], seqs[6] = seqs[6], seqs[5]
    outcomes = [w.push(make_chunk(s))[0] for s in seqs]
    assert ChunkOutcome.HELD in outcomes
    w2 = BedWindower("bed-001", 10, 5, FS)
    ref = feed(w2, list(range(20)))
    w3 = BedWindower("bed-001", 10, 5, FS)
    got = feed(w3, seqs)
    assert [x.end_index for x in got] == [x.end_index for x in ref]
    assert all(x.complete for x in got) and w3.stats.gaps == 0


def test_a_gap_marks_overlapping_windows_incomplete() -> None:
    w = BedWindower("bed-001", 10, 5, FS, max_reorder_chunks=2)
    seqs = [s for s in range(40) if s not in (12, 13)]
    windows = feed(w, seqs)
    assert w.stats.gaps == 1 and w.stats.missing_chunks == 2
    by_end = {x.end_index // 250: x for x in windows}
    assert sorted(by_end) == [10, 15, 20, 25, 30, 35, 40]
    assert by_end[10].complete
    for end in (15, 20):  # windows [5,15) and [10,20) contain seconds 12-13
        assert not by_end[end].complete and by_end[end].missing_samples == 500
        assert np.isnan(by_end[end].samples[0]).sum() == 500
    assert all(by_end[e].complete for e in (25, 30, 35, 40))


def test_late_chunk_after_gap_is_a_duplicate() -> None:
    w = BedWindower("bed-001", 10, 5, FS, max_reorder_chunks=1)
    feed(w, [0, 1, 3, 4])  # 2 declared missing once 2 chunks wait
    outcome, _ = w.push(make_chunk(2))
    assert outcome is ChunkOutcome.DUPLICATE


def test_worker_joining_mid_stream_cuts_no_partial_history() -> None:
    w = BedWindower("bed-001", 10, 5, FS)
    windows = feed(w, list(range(100, 130)))
    assert windows[0].end_index == 110 * 250 and all(x.complete for x in windows)


def test_lead_change_restarts_the_buffer() -> None:
    w = Windower(10, 5, FS)
    for s in range(12):
        w.push(make_chunk(s))
    outcome, windows = w.push(make_chunk(12, leads=("I", "II")))
    assert outcome is ChunkOutcome.RESET and windows == []
    assert w.totals().resets == 1


def test_beds_are_independent() -> None:
    w = Windower(10, 5, FS)
    n = 0
    for s in range(10):
        for bed in ("a", "b", "c"):
            n += len(w.push(make_chunk(s, bed=bed))[1])
    assert n == 3 and set(w.beds) == {"a", "b", "c"}


@pytest.mark.parametrize("leap", [100, 10**9, 2**61])
def test_forged_far_ahead_sequence_numbers_cannot_silence_a_bed(leap: int) -> None:
    """Chunks under the bed's key with sequence numbers far ahead but stamped now are refused before they touch
    the bed; its genuine chunks go on cutting complete windows."""
    w = BedWindower("bed-001", 10, 5, FS, max_reorder_chunks=2)
    windows = feed(w, list(range(12)))
    for k in range(5):  # more than max_reorder_chunks of them: had they been held, a gap would jump to them
        for leads in (("I",), ("II", "V1")):  # another lead set would have restarted the buffer
            forged = WaveformChunk("bed-001", 12 + leap + k, T0 + 12.0, FS, leads, np.zeros((len(leads), 250),
                                                                                           np.int16), 1.0)
            with pytest.raises(DecodeError) as err:
                w.push(forged)
            assert err.value.reason == "implausible-seq"
    windows += feed(w, list(range(12, 30)))
    assert [x.end_index // 250 for x in windows] == list(range(10, 31, 5))
    assert all(x.complete for x in windows) and w.stats.duplicates == 0


def test_a_sequence_leap_its_time_stamp_supports_is_a_gap() -> None:
    """A monitor off for 100 chunks comes back with seq and time both 100 chunks on: a gap, not an attack."""
    w = BedWindower("bed-001", 10, 5, FS)
    windows = feed(w, list(range(12)) + list(range(112, 130)))
    assert w.stats.gaps == 1 and windows[-1].end_index == 130 * 250 and windows[-1].complete


def test_the_bed_limit_refuses_new_beds_and_keeps_the_known_ones() -> None:
    w = Windower(10, 5, FS, max_beds=2)
    for bed in ("a", "b"):
        w.push(make_chunk(0, bed=bed))
    with pytest.raises(DecodeError) as err:
        w.push(make_chunk(0, bed="c"))
    assert err.value.reason == "too-many-beds" and set(w.beds) == {"a", "b"}
    w.push(make_chunk(1, bed="a"))  # known beds go on
    assert w.drop("b") and not w.drop("b")
    w.push(make_chunk(0, bed="c"))  # room again
    assert set(w.beds) == {"a", "c"} and w.totals().accepted == 4 and w.dropped == 1


def test_a_monitor_that_restarts_its_numbering_is_followed_not_silenced() -> None:
    """After a reboot the monitor counts from 0 again, stamped after everything before: a new stream, not 20
    duplicates; replayed copies of old chunks (stamped before) stay duplicates."""
    w = BedWindower("bed-001", 10, 5, FS)
    windows = feed(w, list(range(20)))
    reboot_t = T0 + 25.0
    outcomes = []
    for seq in range(12):
        samples = np.zeros((1, 250), np.int16)
        outcome, cut = w.push(WaveformChunk("bed-001", seq, reboot_t + seq, FS, ("I",), samples, 1.0))
        outcomes.append(outcome)
        windows += cut
    assert outcomes[0] is ChunkOutcome.RESET and set(outcomes[1:]) == {ChunkOutcome.ACCEPTED}
    assert windows[-1].end_s == pytest.approx(reboot_t + 10.0 - 1 / FS) and windows[-1].complete
    assert w.push(make_chunk(5))[0] is ChunkOutcome.DUPLICATE  # an old chunk replayed
