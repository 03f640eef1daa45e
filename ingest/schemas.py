"""Records on the wire: waveform chunks (binary) and scores (JSON), both versioned."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

WAVEFORM_SCHEMA_VERSION = 1
SCORE_SCHEMA_VERSION = 1
PLAN_SCHEMA_VERSION = 1

#: Bed ids are short printable identifiers; they are Kafka keys and database keys.
BED_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")

ScoreState = Literal["ok", "unscorable"]


@dataclass(frozen=True, slots=True)
class WaveformChunk:
    """A contiguous run of samples from one bed.

    ``samples`` has shape ``(n_leads, n_samples)``; int16 samples are ADC units and ``gain``
    converts them to millivolts (``mV = raw / gain``); float32 samples are millivolts and ``gain`` is 1.
    ``t0_s`` is the acquisition time (Unix seconds, simulator/monitor clock) of the first sample.
    """

    bed_id: str
    seq: int
    t0_s: float
    sample_rate_hz: float
    leads: tuple[str, ...]
    samples: np.ndarray
    gain: float = 1.0

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz

    @property
    def t_last_s(self) -> float:
        """Acquisition time of the last sample."""
        return self.t0_s + (self.n_samples - 1) / self.sample_rate_hz

    def millivolts(self) -> np.ndarray:
        """Samples as float32 millivolts, shape ``(n_leads, n_samples)``."""
        if self.samples.dtype == np.int16:
            return self.samples.astype(np.float32) / np.float32(self.gain)
        return self.samples.astype(np.float32, copy=False)


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    """The outcome for one prediction window of one bed.

    ``window_end_s`` is the acquisition time of the window's last sample; the pair
    ``(bed_id, window_end_s)`` identifies the window (scores are idempotent on it).
    """

    bed_id: str
    window_end_s: float
    window_s: float
    state: ScoreState
    risk: float | None = None
    reason: str | None = None
    quality: float | None = None
    heart_rate_bpm: float | None = None
    complete: bool = True
    models: tuple[str, ...] = ()
    scored_at_s: float = 0.0
    seq_last: int = -1
    extra: dict[str, float | int | str | None] = field(default_factory=dict)
    #: The last seconds of the first lead, decimated, for the dashboard's ECG strip (millivolts).
    strip_hz: float | None = None
    strip_mv: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """An ensemble selection a worker put in force, and why (``<prefix>.plans``, JSON, keyed by worker id).

    Every re-plan publishes one; the first has reason ``"start"``. ``members`` and ``previous`` are model ids
    ``"name@version"`` in execution order. Latencies are end-to-end milliseconds (window acquisition to score
    published); ``measured_p99_ms`` is the worker's own measurement over the last interval (``None`` before
    any window was scored). ``objective`` is the validation ROC-AUC of the combined score.
    """

    worker_id: str
    plan_id: int
    at_s: float
    reason: str
    members: tuple[str, ...]
    previous: tuple[str, ...]
    budget_ms: float
    predicted_p50_ms: float
    predicted_p99_ms: float
    objective: float
    beds: int
    hop_s: float
    windows_per_s: float
    measured_p99_ms: float | None = None
    slowdown: float = 1.0
