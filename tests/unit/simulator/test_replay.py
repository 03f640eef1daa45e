"""The simulator sends every bed's chunks in order, on time on the simulated clock, with events applied."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.codec import decode_chunk
from simulator.errors import ConfigError, DataNotFoundError
from simulator.events import Event, parse_events
from simulator.replay import Simulator, SimulatorConfig, chunk_edges, windows_expected
from simulator.sources import make_sources

FS = 250
START_S = 1_700_000_000.0
Simulate = Callable[..., Any]


def samples_by_seq(run: Any, bed: str) -> dict[int, np.ndarray]:
    return {c.seq: c.samples for c in run.wire.chunks(bed)}


def test_every_bed_sends_every_chunk_in_order_and_each_decodes(simulate: Simulate) -> None:
    run = simulate(n_beds=3, duration_s=5.0, seed=4)
    assert run.stats.chunks_sent == {"bed-001": 5, "bed-002": 5, "bed-003": 5}
    assert run.stats.samples_per_bed == 5 * FS and run.stats.ticks == 5
    expected = make_sources("synthetic", 3, None, seed=4)
    for i, bed in enumerate(["bed-001", "bed-002", "bed-003"]):
        chunks = run.wire.chunks(bed)
        assert [c.seq for c in chunks] == [0, 1, 2, 3, 4]
        for c in chunks:
            assert c.t0_s == START_S + c.seq * 1.0
            assert c.sample_rate_hz == FS and c.gain == 200.0 and c.leads == ("II", "V5")
            assert c.samples.dtype == np.int16 and c.samples.shape == (2, FS)
        stream = np.concatenate([c.samples for c in chunks], axis=1)
        assert np.array_equal(stream, expected[i].read(5 * FS)), "chunks join into the bed's signal"


def test_real_records_at_quarter_second_chunks(simulate: Simulate, data_dir: Path) -> None:
    run = simulate(n_beds=2, duration_s=3.0, source="mitdb", chunk_s=0.25, data_dir=data_dir)
    for bed in ("bed-001", "bed-002"):
        chunks = run.wire.chunks(bed)
        assert [c.seq for c in chunks] == list(range(12))
        sizes = [c.n_samples for c in chunks]
        assert set(sizes) == {62, 63} and sum(sizes) == 3 * FS
        starts = np.cumsum([0, *sizes[:-1]])
        for c, start in zip(chunks, starts, strict=True):
            assert c.t0_s == pytest.approx(START_S + start / FS, abs=1e-6)
            assert abs(c.t0_s - (START_S + c.seq * 0.25)) < 1 / FS
    assert run.wire.chunks("bed-001")[0].leads != () and "mitdb/" in run.stats.sources["bed-001"]


def test_pacing_sends_chunk_k_when_the_clock_reaches_its_end(simulate: Simulate) -> None:
    run = simulate(n_beds=2, duration_s=4.0, chunk_s=0.5)
    times = sorted({t for t, _, _ in run.wire.sent})
    assert times == [START_S + (k + 1) * 0.5 for k in range(8)]
    for t, _, payload in run.wire.sent:
        chunk = decode_chunk(payload)
        assert t == START_S + (chunk.seq + 1) * 0.5
    assert run.stats.max_lag_s == 0.0 and run.stats.late_ticks == 0
    assert run.stats.wall_s == pytest.approx(4.0)


@pytest.mark.parametrize("speed", [2.0, 10.0, 0.5])
def test_speed_scales_real_time_but_not_acquisition_time(simulate: Simulate, speed: float) -> None:
    run = simulate(n_beds=1, duration_s=6.0, chunk_s=1.0, speed=speed)
    for t, _, payload in run.wire.sent:
        chunk = decode_chunk(payload)
        assert t == pytest.approx(START_S + (chunk.seq + 1) / speed)
        assert chunk.t0_s == START_S + chunk.seq * 1.0
    assert run.stats.wall_s == pytest.approx(6.0 / speed)


def test_explicit_start_time_stamps_the_chunks(simulate: Simulate) -> None:
    run = simulate(n_beds=1, duration_s=2.0, start_time_s=1_000.0)
    assert [c.t0_s for c in run.wire.chunks()] == [1_000.0, 1_001.0]
    assert run.wire.sent[0][0] == START_S + 1.0, "pacing still follows the real clock"


def test_falling_behind_sends_at_once_and_reports_the_lag(simulate: Simulate) -> None:
    run = simulate(n_beds=4, duration_s=5.0, send_cost_s=0.4)  # 1.6 s of sending per 1-s tick
    assert run.stats.late_ticks >= 3
    assert run.stats.max_lag_s == pytest.approx(0.6 * 4, abs=1e-4)
    assert len(run.wire.sent) == 20
    assert all(s >= 0 for s in run.clock.sleeps)


def test_progress_bar_runs(simulate: Simulate, capsys: pytest.CaptureFixture[str]) -> None:
    simulate(n_beds=1, duration_s=2.0, progress=True)
    assert "simulate" in capsys.readouterr().err


def test_drop_leaves_a_gap_in_seq(simulate: Simulate) -> None:
    run = simulate(n_beds=2, duration_s=6.0, events=parse_events(["drop@bed-002:2+1"]))
    assert run.wire.seqs("bed-002") == [0, 1, 3, 4, 5]
    assert run.wire.seqs("bed-001") == [0, 1, 2, 3, 4, 5]
    assert run.stats.dropped == 1 and run.stats.chunks_sent["bed-002"] == 5


def test_duplicate_sends_the_same_seq_twice(simulate: Simulate) -> None:
    run = simulate(n_beds=1, duration_s=5.0, events=parse_events(["duplicate@bed-001:3"]))
    assert run.wire.seqs("bed-001") == [0, 1, 2, 3, 3, 4]
    payloads = [p for _, _, p in run.wire.sent]
    assert payloads[3] == payloads[4]
    assert run.stats.duplicated == 1


def test_reorder_swaps_two_consecutive_chunks_on_the_wire(simulate: Simulate) -> None:
    run = simulate(n_beds=2, duration_s=6.0, events=parse_events(["reorder@bed-001:2"]))
    assert run.wire.seqs("bed-001") == [0, 1, 3, 2, 4, 5]
    assert run.wire.seqs("bed-002") == [0, 1, 2, 3, 4, 5]
    assert run.stats.reordered == 1
    plain = simulate(n_beds=2, duration_s=6.0)
    assert samples_by_seq(run, "bed-001").keys() == samples_by_seq(plain, "bed-001").keys()
    for seq, samples in samples_by_seq(plain, "bed-001").items():
        assert np.array_equal(samples_by_seq(run, "bed-001")[seq], samples)


def test_lead_off_is_flat_inside_its_interval_only(simulate: Simulate) -> None:
    plain = samples_by_seq(simulate(n_beds=2, duration_s=10.0), "bed-002")
    hit = samples_by_seq(simulate(n_beds=2, duration_s=10.0, events=parse_events(["lead-off@bed-002:3+4"])), "bed-002")
    for seq in range(10):
        if 3 <= seq < 7:
            assert (hit[seq] == hit[seq][0, 0]).all(), f"chunk {seq} is not flat"
        else:
            assert np.array_equal(hit[seq], plain[seq])


def test_noise_burst_is_large_and_confined(simulate: Simulate) -> None:
    plain = samples_by_seq(simulate(n_beds=1, duration_s=8.0), "bed-001")
    hit = samples_by_seq(simulate(n_beds=1, duration_s=8.0, events=parse_events(["noise@bed-001:2+3"])), "bed-001")
    for seq in range(8):
        diff = hit[seq].astype(np.float64) - plain[seq]
        if 2 <= seq < 5:
            assert diff.std() > 0.5 * 200.0
        else:
            assert not diff.any()


def test_af_splice_changes_the_signal_within_the_interval_only(simulate: Simulate, data_dir: Path) -> None:
    kw: dict[str, Any] = {"n_beds": 2, "duration_s": 12.0, "source": "mitdb", "data_dir": data_dir, "seed": 5}
    plain = samples_by_seq(simulate(**kw), "bed-001")
    run = simulate(**kw, events=parse_events(["af@bed-001:3+6"]))
    hit = samples_by_seq(run, "bed-001")
    for seq in range(12):
        if 3 <= seq < 9:
            assert not np.array_equal(hit[seq], plain[seq]), f"chunk {seq} should be AF"
        else:
            assert np.array_equal(hit[seq], plain[seq]), f"chunk {seq} should be untouched"
    assert "from mitdb/" in run.stats.sources["bed-001"]
    assert samples_by_seq(run, "bed-002").keys() == set(range(12))


def test_af_event_without_data_names_the_setting() -> None:
    config = SimulatorConfig(n_beds=1, duration_s=5.0, source="synthetic", events=(Event("af", "bed-001", 1, 2),))
    with pytest.raises(DataNotFoundError, match="HOLMES_DATA_DIR"):
        Simulator(config, lambda bed, payload: None)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"chunk_s": 0.2}, "chunk_s must be between 0.25 and 1.0"),
        ({"chunk_s": 1.5}, "chunk_s must be between"),
        ({"speed": 0.0}, "speed must be > 0"),
        ({"speed": float("inf")}, "speed must be > 0"),
        ({"n_beds": 0}, "n_beds must be"),
        ({"duration_s": 0.0}, "duration_s must be"),
        ({"seed": -1}, "seed must be"),
        ({"sample_rate_hz": 250.5}, "sample_rate_hz must be"),
        ({"source": "holter"}, "unknown source"),
        ({"bed_id_prefix": "bed "}, "invalid bed id"),
        ({"start_time_s": -5.0}, "start_time_s"),
        ({"events": (Event("drop", "bed-009", 1.0),)}, "names bed-009, but the beds are bed-001..bed-002"),
        ({"events": (Event("drop", "bed-001", 10.0),)}, "starts at or after the end"),
    ],
)
def test_bad_config_is_refused_with_a_reason(override: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"n_beds": 2, "duration_s": 10.0, "source": "synthetic"} | override
    with pytest.raises(ConfigError, match=message):
        SimulatorConfig(**settings)


def test_config_lists_bed_ids() -> None:
    config = SimulatorConfig(n_beds=1000, duration_s=1.0)
    assert config.bed_ids[:2] == ("bed-001", "bed-002") and config.bed_ids[-1] == "bed-1000"


def test_ticks_must_be_built_in_order() -> None:
    sim = Simulator(SimulatorConfig(n_beds=1, duration_s=3.0, source="synthetic", start_time_s=0.0), print)
    sim.build_tick(0)
    with pytest.raises(ValueError, match="out of order"):
        sim.build_tick(2)


@pytest.mark.parametrize(
    ("duration_s", "chunk_s", "sizes"),
    [(3.0, 1.0, [250, 250, 250]), (1.0, 0.25, [63, 62, 63, 62]), (2.5, 1.0, [250, 250, 125])],
)
def test_chunk_edges(duration_s: float, chunk_s: float, sizes: list[int]) -> None:
    edges = chunk_edges(duration_s, chunk_s, FS)
    assert np.diff(edges).tolist() == sizes and edges[0] == 0


@pytest.mark.parametrize(
    ("duration_s", "window_s", "hop_s", "expected"),
    [(60, 10, 5, 11), (10, 10, 5, 1), (9.9, 10, 5, 0), (60, 10, 10, 6), (61, 10, 2.5, 21), (0, 10, 5, 0)],
)
def test_windows_expected(duration_s: float, window_s: float, hop_s: float, expected: int) -> None:
    assert windows_expected(duration_s, window_s, hop_s) == expected


def test_windows_expected_matches_the_samples_a_run_sends(simulate: Simulate) -> None:
    run = simulate(n_beds=1, duration_s=23.0, chunk_s=0.25)
    total = sum(c.n_samples for c in run.wire.chunks())
    ends = [k * 5 * FS for k in range(1, total // (5 * FS) + 1) if k * 5 * FS >= 10 * FS]
    assert windows_expected(23.0, 10.0, 5.0) == len(ends) == 3


def test_staggered_beds_start_late_and_send_the_same_signal(simulate: Simulate) -> None:
    run = simulate(n_beds=7, duration_s=6.0, seed=4, stagger_ticks=5)
    assert run.stats.ticks == 6 + 4  # the last bed starts (and ends) 4 ticks late
    expected = make_sources("synthetic", 7, None, seed=4)
    for i in range(7):
        bed = f"bed-{i + 1:03d}"
        chunks = run.wire.chunks(bed)
        offset = i % 5
        assert [c.seq for c in chunks] == list(range(6)), "every bed sends its whole run"
        assert [c.t0_s for c in chunks] == [START_S + offset + k for k in range(6)]
        stream = np.concatenate([c.samples for c in chunks], axis=1)
        assert np.array_equal(stream, expected[i].read(6 * FS))
    # at the tick where bed-001 has sent 5 s, bed-002 has sent 4 s: their hops fall due in different ticks
    first_send = {bed: min(t for t, b, _ in run.wire.sent if b == bed) for bed in ("bed-001", "bed-002")}
    assert first_send["bed-002"] - first_send["bed-001"] == pytest.approx(1.0)


def test_spread_beds_send_at_their_own_moment_within_the_tick(simulate: Simulate) -> None:
    run = simulate(n_beds=4, duration_s=3.0, seed=4, spread_within_tick=True)
    for i in range(4):
        bed = f"bed-{i + 1:03d}"
        phase = (i * 0.6180339887) % 1.0
        chunks = run.wire.chunks(bed)
        assert [c.t0_s for c in chunks] == pytest.approx([START_S + phase + k for k in range(3)])
        sends = [t for t, b, _ in run.wire.sent if b == bed]
        # chunk k is acquired over [t0, t0 + 1 s) and goes out when its last sample is in
        assert sends == pytest.approx([c.t0_s + 1.0 for c in chunks])
