"""Injectable bed events: signal faults (lead-off, noise), wire faults (drop, duplicate, reorder) and AF episodes."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from scipy.signal import butter, sosfilt

from ingest.schemas import BED_ID_RE
from simulator.errors import ConfigError
from simulator.sources import AfLibrary, Source, to_adc

EventKind = Literal["lead-off", "noise", "drop", "duplicate", "reorder", "af"]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
#: Events that change the samples of a bed; the others change which chunks reach the wire.
SAMPLE_EVENT_KINDS: frozenset[str] = frozenset({"lead-off", "noise", "af"})
WIRE_EVENT_KINDS: frozenset[str] = frozenset({"drop", "duplicate", "reorder"})

SPEC_HELP = "KIND@BED:START[+DURATION] in seconds from the start of the run, e.g. lead-off@bed-003:20+10"
LEAD_OFF_LEVEL_MV = 0.0
NOISE_RMS_MV = 1.0
NOISE_BAND_HZ = (20.0, 100.0)
AF_CROSSFADE_S = 0.1
AF_REFERENCE_S = 3.0

_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*s?\s*$")
_APPLY_ORDER = {"af": 0, "noise": 1, "lead-off": 2}


@dataclass(frozen=True, slots=True)
class Event:
    """One event on one bed over ``[start_s, start_s + duration_s)`` of simulated time since the run started.

    A wire event with ``duration_s == 0`` hits the one chunk holding ``start_s`` (a reorder: that chunk and
    the next); sample events need a positive duration.
    """

    kind: EventKind
    bed_id: str
    start_s: float
    duration_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ConfigError(f"unknown event kind {self.kind!r}; expected one of {', '.join(EVENT_KINDS)}")
        if not isinstance(self.bed_id, str) or not BED_ID_RE.match(self.bed_id):
            raise ConfigError(f"bed id {self.bed_id!r} is not a valid bed id (like bed-003)")
        if not math.isfinite(self.start_s) or self.start_s < 0:
            raise ConfigError(f"event start {self.start_s} s must be a finite number >= 0")
        if not math.isfinite(self.duration_s) or self.duration_s < 0:
            raise ConfigError(f"event duration {self.duration_s} s must be a finite number >= 0")
        if self.kind in SAMPLE_EVENT_KINDS and self.duration_s <= 0:
            raise ConfigError(f"a {self.kind} event needs a duration > 0 s: {self.kind}@{self.bed_id}:START+DURATION")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def span(self, sample_rate_hz: float) -> tuple[int, int]:
        """The event as sample indices ``[start, stop)`` from the start of the run (never empty)."""
        start = round(self.start_s * sample_rate_hz)
        return start, max(start + 1, round(self.end_s * sample_rate_hz))

    def spec(self) -> str:
        """The compact CLI form, which :func:`parse_event` reads back."""
        tail = f"+{self.duration_s:g}" if self.duration_s else ""
        return f"{self.kind}@{self.bed_id}:{self.start_s:g}{tail}"


def _seconds(text: str, what: str, spec: str) -> float:
    m = _NUMBER.match(text)
    if not m:
        raise ConfigError(f"{what} {text!r} in event {spec!r} is not a number of seconds; expected {SPEC_HELP}")
    return float(m.group(1))


def parse_event(spec: str) -> Event:
    """Parse ``kind@bed:start_s+duration_s`` (e.g. ``lead-off@bed-003:20+10``); raises ``ValueError`` if bad."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"empty event spec; expected {SPEC_HELP}")
    text = spec.strip()
    kind, at, rest = text.partition("@")
    if not at:
        raise ConfigError(f"event {spec!r} has no '@'; expected {SPEC_HELP}")
    kind = kind.strip().lower()
    if kind not in EVENT_KINDS:
        raise ConfigError(f"unknown event kind {kind!r} in {spec!r}; expected one of {', '.join(EVENT_KINDS)}")
    bed, colon, when = rest.rpartition(":")
    if not colon:
        raise ConfigError(f"event {spec!r} has no ':START'; expected {SPEC_HELP}")
    bed = bed.strip()
    if not BED_ID_RE.match(bed):
        raise ConfigError(f"bed {bed!r} in event {spec!r} is not a valid bed id (like bed-003)")
    start_text, plus, duration_text = when.partition("+")
    start_s = _seconds(start_text, "start", spec)
    duration_s = _seconds(duration_text, "duration", spec) if plus else 0.0
    if kind in SAMPLE_EVENT_KINDS and duration_s <= 0:
        raise ConfigError(f"a {kind} event needs a duration > 0 s, as in {kind}@{bed}:{start_text}+10 (got {spec!r})")
    return Event(kind, bed, start_s, duration_s)


def parse_events(specs: Iterable[str]) -> tuple[Event, ...]:
    """Parse several specs; the first bad one raises."""
    return tuple(parse_event(s) for s in specs)


def emg_noise(n: int, n_leads: int, sample_rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """EMG-like noise: band-limited (20-100 Hz) Gaussian noise of ``NOISE_RMS_MV`` RMS, mV, ``(n_leads, n)``."""
    lo, hi = NOISE_BAND_HZ
    hi = min(hi, 0.45 * sample_rate_hz)
    sos = butter(4, [lo, hi], btype="bandpass", fs=sample_rate_hz, output="sos")
    settle = round(0.5 * sample_rate_hz)
    x = sosfilt(sos, rng.standard_normal((n_leads, n + settle)), axis=1)[:, settle:]
    rms = np.sqrt(np.mean(x**2, axis=1, keepdims=True))
    return np.asarray(NOISE_RMS_MV * x / np.where(rms > 0, rms, 1.0))


def typical_ptp(x: np.ndarray, sample_rate_hz: float) -> float:
    """Median peak-to-peak amplitude over 1-s windows of a 1-D signal (about one QRS each), robust to outliers."""
    win = max(1, round(sample_rate_hz))
    n = x.size // win
    if n == 0:
        return float(np.ptp(x)) if x.size else 0.0
    return float(np.median(np.ptp(x[: n * win].reshape(n, win), axis=1)))


@dataclass(slots=True)
class _Span:
    event: Event
    start: int
    stop: int
    data: np.ndarray | None = None
    origin: str = ""
    matched: bool = False
    weights: np.ndarray | None = None


class EventSource:
    """Wraps a bed's source and overlays its lead-off, noise and AF events on the samples (by sample index)."""

    def __init__(
        self,
        inner: Source,
        events: Sequence[Event],
        *,
        seed: int,
        af_library: AfLibrary | None = None,
    ) -> None:
        self.inner = inner
        fs = inner.sample_rate_hz
        n_leads = len(inner.leads)
        self._spans: list[_Span] = []
        for i, ev in enumerate(sorted(events, key=lambda e: (_APPLY_ORDER.get(e.kind, 9), e.start_s))):
            if ev.kind not in SAMPLE_EVENT_KINDS:
                raise ConfigError(f"{ev.kind} is a wire event, not a signal event")
            start, stop = ev.span(fs)
            span = _Span(ev, start, stop)
            rng = np.random.default_rng([seed, i, 0xE7])
            if ev.kind == "noise":
                span.data = emg_noise(stop - start, n_leads, fs, rng) * inner.gain
            elif ev.kind == "af":
                if af_library is None:
                    raise ConfigError("an af event needs the MIT-BIH data folder (AF episodes are real recordings)")
                span.data, span.origin = af_library.episode(stop - start, rng)
            self._spans.append(span)
        self._has_af = any(s.event.kind == "af" for s in self._spans)
        self._history = np.zeros((n_leads, 0), dtype=np.int16)
        self._ahead = np.zeros((n_leads, 0), dtype=np.int16)
        self._pos = 0

    @property
    def leads(self) -> tuple[str, ...]:
        return self.inner.leads

    @property
    def gain(self) -> float:
        return self.inner.gain

    @property
    def sample_rate_hz(self) -> float:
        return self.inner.sample_rate_hz

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(s.event for s in self._spans)

    def describe(self) -> str:
        extra = ", ".join(s.event.spec() + (f" from {s.origin}" if s.origin else "") for s in self._spans)
        return f"{self.inner.describe()} [{extra}]"

    def warm(self, seconds: float = 0.0) -> None:
        self.inner.warm(seconds)

    def _peek(self, n: int) -> np.ndarray:
        short = n - self._ahead.shape[1]
        if short > 0:
            self._ahead = np.concatenate([self._ahead, self.inner.read(short)], axis=1)
        return self._ahead[:, :n]

    def _take(self, n: int) -> np.ndarray:
        if self._ahead.shape[1] == 0:
            return self.inner.read(n)
        out = self._peek(n)
        self._ahead = self._ahead[:, n:]
        return out

    def _match_af(self, span: _Span, raw: np.ndarray) -> None:
        """Scale and shift the AF recording, lead by lead, to the bed's own amplitude and baseline."""
        assert span.data is not None
        fs = self.sample_rate_hz
        ahead = self._peek(round(AF_REFERENCE_S * fs))
        ref = np.concatenate([self._history, raw, ahead], axis=1).astype(np.float64)
        af = span.data
        out = np.empty((ref.shape[0], af.shape[1]))
        for lead in range(ref.shape[0]):
            src = af[min(lead, af.shape[0] - 1)]
            ref_ptp, af_ptp = typical_ptp(ref[lead], fs), typical_ptp(src, fs)
            scale = ref_ptp / af_ptp if af_ptp > 1e-6 else self.gain
            out[lead] = (src - np.median(src)) * scale + np.median(ref[lead])
        span.data = out
        span.weights = self._af_weights(span)
        span.matched = True

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples of the bed, with the events that overlap them applied."""
        lo, hi = self._pos, self._pos + n
        raw = self._take(n)
        hits = [s for s in self._spans if s.start < hi and lo < s.stop]
        out = raw
        if hits:
            x = raw.astype(np.float64)
            for span in hits:
                a, b = max(lo, span.start), min(hi, span.stop)
                here, there = slice(a - lo, b - lo), slice(a - span.start, b - span.start)
                kind = span.event.kind
                if kind == "lead-off":
                    x[:, here] = LEAD_OFF_LEVEL_MV * self.gain
                elif kind == "noise":
                    assert span.data is not None
                    x[:, here] += span.data[:, there]
                else:
                    if not span.matched:
                        self._match_af(span, raw)
                    assert span.data is not None and span.weights is not None
                    w = span.weights[there]
                    x[:, here] = w * span.data[:, there] + (1.0 - w) * x[:, here]
            out = to_adc(x / self.gain, self.gain)
        if self._has_af:
            keep = round(AF_REFERENCE_S * self.sample_rate_hz)
            self._history = np.concatenate([self._history, raw], axis=1)[:, -keep:]
        self._pos = hi
        return out

    def _af_weights(self, span: _Span) -> np.ndarray:
        n = span.stop - span.start
        xf = min(round(AF_CROSSFADE_S * self.sample_rate_hz), n // 2)
        w = np.ones(n)
        if xf > 0:
            ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(xf) + 0.5) / xf)
            w[:xf] = ramp
            w[n - xf :] = ramp[::-1]
        return w


class WireEffects:
    """Applies one bed's drop, duplicate and reorder events to its outgoing chunks, and counts them."""

    def __init__(self, events: Sequence[Event], sample_rate_hz: float) -> None:
        self._spans: list[tuple[str, int, int]] = []
        for ev in events:
            if ev.kind not in WIRE_EVENT_KINDS:
                raise ConfigError(f"{ev.kind} is a signal event, not a wire event")
            self._spans.append((ev.kind, *ev.span(sample_rate_hz)))
        self._held: list[bytes] = []
        self.dropped = 0
        self.duplicated = 0
        self.reordered = 0

    def route(self, start: int, stop: int, payload: bytes) -> list[bytes]:
        """What to put on the wire now for the chunk holding samples ``[start, stop)`` of the run."""
        kinds = {k for k, a, b in self._spans if a < stop and start < b}
        copies = [payload, payload] if "duplicate" in kinds else [payload]
        if "drop" in kinds:
            self.dropped += 1
            copies = []
        elif "duplicate" in kinds:
            self.duplicated += 1
        if self._held:
            held, self._held = self._held, []
            if copies:
                self.reordered += 1
            return copies + held
        if "reorder" in kinds and copies:
            self._held = copies
            return []
        return copies

    def flush(self) -> list[bytes]:
        """Chunks still held back for a swap when the run ends."""
        held, self._held = self._held, []
        return held
