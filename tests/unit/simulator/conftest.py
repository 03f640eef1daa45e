"""Simulator test fixtures: the real data folder, a fake clock and a send that collects what goes on the wire."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ingest.codec import decode_chunk
from ingest.schemas import WaveformChunk

with warnings.catch_warnings():
    # Third-party deprecations at import: wfdb 4.3 calls DataFrame.set_index(inplace=True) (pandas 3.1),
    # kafka-python 3.0 calls importlib.resources.read_text and open_text (Python 3.11).
    warnings.filterwarnings("ignore", message="The inplace keyword", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="(read|open)_text is deprecated", category=DeprecationWarning)
    import kafka  # noqa: F401
    import wfdb  # noqa: F401

from simulator.replay import Simulator, SimulatorConfig, SimulatorStats  # noqa: E402

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data"
START_S = 1_700_000_000.0


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared PhysioNet folder: ``HOLMES_DATA_DIR``, default ``../shared/data`` next to the repo."""
    path = Path(os.environ.get("HOLMES_DATA_DIR", DEFAULT_DATA_DIR)).resolve()
    if not (path / "mitdb").is_dir() or not (path / "cinc2017").is_dir():
        pytest.skip(f"real ECG data not found at {path} (mitdb/, cinc2017/); set HOLMES_DATA_DIR")
    return path


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
