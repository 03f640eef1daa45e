"""Simulator test fixtures: the real data folder, a fake clock and a send that collects what goes on the wire."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from ingest.codec import decode_chunk
from ingest.schemas import WaveformChunk
from simulator.replay import Simulator, SimulatorConfig, SimulatorStats

START_S = 1_700_000_000.0


@dataclass
class FakeClock:
    """A clock that only moves when slept on (or told to), recording every sleep."""

    now: float = START_S
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"negative sleep {seconds}"
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Wire:
    """Collects ``(clock time, bed_id, payload)`` for every send, like a broker would see them."""

    clock: FakeClock
    sent: list[tuple[float, str, bytes]] = field(default_factory=list)
    cost_s: float = 0.0

    def __call__(self, bed_id: str, payload: bytes) -> None:
        self.sent.append((self.clock.now, bed_id, payload))
        self.clock.now += self.cost_s

    def chunks(self, bed_id: str | None = None) -> list[WaveformChunk]:
        """Every payload decoded (checked by the real decoder), in wire order."""
        out = []
        for _, bed, payload in self.sent:
            chunk = decode_chunk(payload)
            assert chunk.bed_id == bed, "payload keyed by another bed"
            if bed_id is None or bed == bed_id:
                out.append(chunk)
        return out

    def seqs(self, bed_id: str) -> list[int]:
        return [c.seq for c in self.chunks(bed_id)]


@dataclass
class Run:
    stats: SimulatorStats
    wire: Wire
    clock: FakeClock
    simulator: Simulator


@pytest.fixture
def simulate() -> Callable[..., Run]:
    """Factory: run a whole simulation on a fake clock; keyword arguments go to :class:`SimulatorConfig`."""

    def run(*, send_cost_s: float = 0.0, progress: bool = False, **config: Any) -> Run:
        config.setdefault("source", "synthetic")
        clock = FakeClock()
        wire = Wire(clock, cost_s=send_cost_s)
        sim = Simulator(SimulatorConfig(**config), wire, clock=clock, sleep=clock.sleep)
        stats = sim.run(progress=progress)
        return Run(stats, wire, clock, sim)

    return run
