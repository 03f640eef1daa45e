"""Spread beds are sent in short slots: never before a chunk's acquisition end, less than one slot after it,
each bed in order, and the same chunks and bytes as when every bed is sent at its own moment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from ingest.codec import decode_chunk
from simulator.errors import ConfigError
from simulator.events import parse_events
from simulator.replay import DEFAULT_SLOT_S, Simulator, SimulatorConfig

from .conftest import START_S, FakeClock, Wire

FS = 250
EPS = 1e-6  # Unix times near 1.7e9 carry ~2e-7 s of float rounding
Simulate = Callable[..., Any]


def acquisition_end(payload: bytes, speed: float) -> float:
    """Real (clock) time at which a chunk's last sample has been acquired (the run starts at START_S)."""
    chunk = decode_chunk(payload)
    return START_S + (chunk.t0_s - START_S + chunk.n_samples / chunk.sample_rate_hz) / speed


def payloads_by_bed(sent: list[tuple[float, str, bytes]]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for _, bed, payload in sent:
        out.setdefault(bed, []).append(payload)
    return out


@pytest.mark.parametrize(
    ("chunk_s", "stagger", "speed", "slot_s"),
    [
        (1.0, 5, 1.0, DEFAULT_SLOT_S),  # holmes bench's pattern
        (0.25, 3, 1.0, 0.02),  # 62/63-sample chunks: a staggered bed's chunk is a sample off its tick
        (0.25, 2, 4.0, 0.05),
        (0.5, 4, 10.0, 0.1),  # slots longer than a sped-up tick: ticks' slots interleave
        (1.0, 1, 1.0, 0.0),  # no coalescing: every bed at its own moment
    ],
)
def test_no_chunk_goes_out_before_its_acquisition_end_nor_a_slot_after(
    simulate: Simulate, chunk_s: float, stagger: int, speed: float, slot_s: float
) -> None:
    run = simulate(
        n_beds=37,
        duration_s=4.0,
        chunk_s=chunk_s,
        speed=speed,
        stagger_ticks=stagger,
        spread_within_tick=True,
        slot_s=slot_s,
        seed=3,
    )
    assert run.stats.total_sent == len(run.wire.sent) == 37 * round(4.0 / chunk_s)
    times = [t for t, _, _ in run.wire.sent]
    assert times == sorted(times), "the wire sees sends in clock order"
    for t, _, payload in run.wire.sent:
        end = acquisition_end(payload, speed)
        assert t >= end - EPS, f"sent {end - t:.6f} s before its last sample"
        if slot_s > 0:
            assert t - end < slot_s + EPS, f"sent {t - end:.4f} s after its acquisition, over one slot"
        else:
            assert t == pytest.approx(end, abs=EPS)
    assert run.stats.max_lag_s == 0.0 and run.stats.late_ticks == 0


@pytest.mark.parametrize("stagger", [1, 3])
def test_each_bed_keeps_its_order_and_sends_the_same_bytes_as_without_slots(simulate: Simulate, stagger: int) -> None:
    kw: dict[str, Any] = {
        "n_beds": 23,
        "duration_s": 5.0,
        "chunk_s": 0.25,
        "stagger_ticks": stagger,
        "spread_within_tick": True,
        "seed": 8,
    }
    slotted = simulate(**kw, slot_s=0.05)
    exact = simulate(**kw, slot_s=0.0)
    assert slotted.stats.chunks_sent == exact.stats.chunks_sent
    for bed in slotted.simulator.bed_ids:
        assert slotted.wire.seqs(bed) == list(range(20))
    assert payloads_by_bed(slotted.wire.sent) == payloads_by_bed(exact.wire.sent)
    # and the same as building tick by tick
    config = SimulatorConfig(source="synthetic", start_time_s=START_S, **kw)
    sim = Simulator(config, lambda bed, payload: None)
    built: dict[str, list[bytes]] = {}
    for seq in range(sim.n_ticks):
        for bed, payload in sim.build_tick(seq):
            built.setdefault(bed, []).append(payload)
    assert payloads_by_bed(slotted.wire.sent) == built


def test_slots_turn_per_bed_wakeups_into_a_few_per_second(simulate: Simulate) -> None:
    kw: dict[str, Any] = {"n_beds": 300, "duration_s": 3.0, "stagger_ticks": 5, "spread_within_tick": True}
    exact = simulate(**kw, slot_s=0.0)
    slotted = simulate(**kw, slot_s=0.02)
    assert len(exact.clock.sleeps) >= 0.9 * 300 * 3  # about one per bed and chunk
    n_ticks = slotted.stats.ticks
    moments = {t for t, _, _ in slotted.wire.sent}
    assert slotted.stats.send_slots == len(moments) <= n_ticks * (1 / 0.02 + 1)
    assert len(slotted.clock.sleeps) <= slotted.stats.send_slots
    assert slotted.stats.total_sent == exact.stats.total_sent == 300 * 3


def test_beds_without_a_phase_are_not_delayed_by_slots(simulate: Simulate) -> None:
    run = simulate(n_beds=6, duration_s=3.0, chunk_s=0.25, stagger_ticks=2, slot_s=0.1)
    for t, _, payload in run.wire.sent:
        end = acquisition_end(payload, 1.0)
        assert end - EPS <= t < end + 0.1
    # an unstaggered bed's chunks go out exactly at their end, as without slots
    run = simulate(n_beds=2, duration_s=2.0, chunk_s=0.5, slot_s=0.1)
    assert sorted({t for t, _, _ in run.wire.sent}) == [START_S + 0.5 * (k + 1) for k in range(4)]


def test_falling_behind_is_reported_and_still_never_early(simulate: Simulate) -> None:
    run = simulate(n_beds=40, duration_s=3.0, spread_within_tick=True, send_cost_s=0.04)  # 1.6 s a 1-s tick
    assert len(run.wire.sent) == 120 and run.stats.late_ticks > 0 and run.stats.max_lag_s > 0.05
    for t, _, payload in run.wire.sent:
        assert t >= acquisition_end(payload, 1.0) - EPS
    assert all(s >= 0 for s in run.clock.sleeps)


def test_a_reorder_cut_by_the_end_is_released_with_the_beds_last_chunk(simulate: Simulate) -> None:
    run = simulate(
        n_beds=3,
        duration_s=4.0,
        stagger_ticks=2,
        spread_within_tick=True,
        events=parse_events(["reorder@bed-002:3", "reorder@bed-003:1"]),
    )
    assert run.wire.seqs("bed-002") == [0, 1, 2, 3]
    assert run.wire.seqs("bed-003") == [0, 2, 1, 3]
    assert run.stats.reordered == 1
    for t, _, payload in run.wire.sent:
        assert t >= acquisition_end(payload, 1.0) - EPS


@dataclass
class BurstWire(Wire):
    """A wire with ``send_many``: records each burst it is handed."""

    bursts: list[list[str]] = field(default_factory=list)

    def send_many(self, items: list[tuple[str, bytes]]) -> None:
        self.bursts.append([bed for bed, _ in items])
        for bed, payload in items:
            self.sent.append((self.clock.now, bed, payload))


def test_a_send_with_send_many_gets_each_slot_in_one_call() -> None:
    clock = FakeClock()
    wire = BurstWire(clock)
    config = SimulatorConfig(n_beds=50, duration_s=3.0, source="synthetic", spread_within_tick=True, slot_s=0.05)
    stats = Simulator(config, wire, clock=clock, sleep=clock.sleep).run()
    assert len(wire.bursts) == stats.send_slots and sum(map(len, wire.bursts)) == stats.total_sent == 150
    assert len(wire.bursts) <= 3 * 21
    times: dict[float, int] = {}
    for t, _, _ in wire.sent:
        times[t] = times.get(t, 0) + 1
    assert sorted(times.values()) == sorted(map(len, wire.bursts)), "one burst per send moment"


@pytest.mark.parametrize("slot_s", [-0.01, 0.5, float("nan")])
def test_bad_slot_is_refused(slot_s: float) -> None:
    with pytest.raises(ConfigError, match="slot_s must be between 0 and"):
        SimulatorConfig(n_beds=1, duration_s=1.0, slot_s=slot_s)


def test_tick_sends_rounds_up_to_the_slot_end() -> None:
    config = SimulatorConfig(n_beds=10, duration_s=2.0, source="synthetic", spread_within_tick=True, slot_s=0.1)
    sim = Simulator(config, lambda bed, payload: None)
    sends = sim.tick_sends(0)
    assert [lag for lag, _ in sends] == sorted(lag for lag, _ in sends)
    seen = []
    for lag, beds in sends:
        for i in beds:
            assert lag - 0.1 < sim.phases_s[i] <= lag
            seen.append(i)
        assert [sim.phases_s[i] for i in beds] == sorted(sim.phases_s[i] for i in beds), "acquisition order"
    assert sorted(seen) == list(range(10))
