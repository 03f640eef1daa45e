"""Per-bed ECG sources at one sample rate: MIT-BIH replay, CinC 2017 replay and a seeded synthetic generator."""

from __future__ import annotations

import collections
import copy
import csv
import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import wfdb
from scipy.signal import resample_poly

from simulator.errors import ConfigError, DataNotFoundError

SourceKind = Literal["mitdb", "cinc2017", "synthetic"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("mitdb", "cinc2017", "synthetic")

DEFAULT_SAMPLE_RATE_HZ = 250.0
#: ADC units per millivolt (MIT-BIH's own): 5 uV steps and a +-163 mV range in int16.
DEFAULT_GAIN = 200.0
#: MIT-BIH records with clean, long (AFIB runs, used to splice AF episodes.
AF_RECORDS: tuple[str, ...] = ("201", "203", "210", "219", "221")

_MITDB_BLOCK_S = 60.0
_LOOP_CROSSFADE_S = 0.2
_SYNTH_BLOCK_S = 10.0
_INT16_MIN, _INT16_MAX = -32768, 32767


class Source(Protocol):
    """A bed's endless signal, served as consecutive int16 blocks of shape ``(n_leads, n)``.

    Returned arrays may be read-only views of shared caches: copy before modifying.
    """

    @property
    def leads(self) -> tuple[str, ...]: ...

    @property
    def gain(self) -> float: ...

    @property
    def sample_rate_hz(self) -> float: ...

    def read(self, n: int) -> np.ndarray: ...

    def warm(self, seconds: float = 0.0) -> None: ...

    def describe(self) -> str: ...


def to_adc(mv: np.ndarray, gain: float) -> np.ndarray:
    """Millivolts to int16 ADC units, saturating like a real front end."""
    return np.clip(np.rint(mv * gain), _INT16_MIN, _INT16_MAX).astype(np.int16)


def resample_ratio(native_hz: float, target_hz: float) -> tuple[int, int]:
    """The (up, down) pair of ``resample_poly`` taking integer ``native_hz`` to integer ``target_hz``."""
    if not float(native_hz).is_integer() or not float(target_hz).is_integer() or target_hz <= 0:
        raise ConfigError(f"sample rates must be positive whole numbers of Hz, got {native_hz} -> {target_hz}")
    native, target = int(native_hz), int(target_hz)
    g = math.gcd(native, target)
    return target // g, native // g


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _crossfade_weights(n: int) -> np.ndarray:
    """Raised-cosine ramp rising from ~0 to ~1 over ``n`` samples."""
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


class _BlockSource:
    """Serves ``read(n)`` from an endless sequence of blocks; subclasses say where blocks come from."""

    def __init__(self, sample_rate_hz: float, gain: float) -> None:
        self._sample_rate_hz = float(sample_rate_hz)
        self._gain = float(gain)
        self._block: np.ndarray | None = None
        self._pos = 0
        self._queued: collections.deque[np.ndarray] = collections.deque()  # blocks loaded ahead, in order

    @property
    def sample_rate_hz(self) -> float:
        return self._sample_rate_hz

    @property
    def gain(self) -> float:
        return self._gain

    def _start(self) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def _next_block(self) -> np.ndarray:
        raise NotImplementedError

    def warm(self, seconds: float = 0.0) -> None:
        """Load what the first read needs and, with ``seconds``, every block that the next ``seconds`` of reading
        will need (disk reads, resampling: a MIT-BIH minute is resampled from 360 Hz when a bed first reaches
        it), so that ticks are not slowed by it. At 1,000 beds most beds cross into a block no bed had read
        yet within a minute: a third of the simulator's time while streaming, on a machine it shares."""
        if self._block is None:
            self._block, self._pos = self._start()
        need = round(seconds * self._sample_rate_hz) - (self._block.shape[1] - self._pos)
        need -= sum(b.shape[1] for b in self._queued)
        while need > 0:
            blk = self._next_block()
            self._queued.append(blk)
            need -= max(blk.shape[1], 1)

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples, int16, shape ``(n_leads, n)``."""
        if n < 0:
            raise ValueError(f"cannot read {n} samples")
        self.warm()
        assert self._block is not None
        blk, pos = self._block, self._pos
        if pos + n <= blk.shape[1]:
            self._pos = pos + n
            return blk[:, pos : pos + n]
        parts: list[np.ndarray] = []
        need = n
        while need > 0:
            avail = blk.shape[1] - pos
            if avail <= 0:
                blk, pos = (self._queued.popleft() if self._queued else self._next_block()), 0
                continue
            take = min(avail, need)
            parts.append(blk[:, pos : pos + take])
            pos += take
            need -= take
        self._block, self._pos = blk, pos
        return np.concatenate(parts, axis=1)


class MitdbRecord:
    """One MIT-BIH record resampled to the target rate, as an endless loop, loaded lazily in cached blocks.

    The loop has period ``period`` samples; its first samples are cross-faded with the record's tail so that
    the wrap-around has no step. Each block is resampled from the record's samples plus a margin that keeps
    the resampling filter's edge effects out of the block, so blocks join seamlessly.

    The record's digital samples are read once, on the first block, and kept (int16, about 2.6 MB for a
    30-min two-lead MIT-BIH record): re-reading a span with ``wfdb.rdrecord(sampfrom=, sampto=)`` parsed the
    header and checksummed the file again for every block, ~3 ms of the simulator's CPU per block, while
    1,000 beds cross a block boundary ~17 times a second.
    """

    def __init__(
        self,
        path: Path,
        sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ,
        gain: float = DEFAULT_GAIN,
        block_s: float = _MITDB_BLOCK_S,
    ) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.sample_rate_hz = float(sample_rate_hz)
        self.gain = float(gain)
        self._block_s = block_s
        self._header: wfdb.Record | None = None
        self._digital: wfdb.Record | None = None
        self._blocks: dict[int, np.ndarray] = {}
        self._up = self._down = self._xf = self._period = self._block_len = 0

    def _head(self) -> wfdb.Record:
        if self._header is None:
            try:
                self._header = wfdb.rdheader(str(self.path))
            except FileNotFoundError as exc:
                raise DataNotFoundError(f"MIT-BIH record {self.path} not found") from exc
            self._up, self._down = resample_ratio(self._header.fs, self.sample_rate_hz)
            n_in = int(self._header.sig_len)
            n_out = math.ceil(n_in * self._up / self._down)
            self._xf = max(self._up, round(_LOOP_CROSSFADE_S * self.sample_rate_hz))
            # Block and loop boundaries sit on multiples of `up`, where output and input samples coincide.
            self._period = ((n_out - self._xf) // self._up) * self._up
            self._block_len = max(self._up, round(self._block_s * self.sample_rate_hz / self._up) * self._up)
            if self._period < max(self._xf, 1):
                raise DataNotFoundError(f"MIT-BIH record {self.path} is too short to replay")
        return self._header

    def _record(self) -> wfdb.Record:
        """The whole record as digital samples (int16), read once."""
        if self._digital is None:
            try:
                self._digital = wfdb.rdrecord(str(self.path), physical=False, return_res=16)
            except FileNotFoundError as exc:
                raise DataNotFoundError(f"MIT-BIH record {self.path} not found") from exc
        return self._digital

    def _millivolts(self, lo: int, hi: int) -> np.ndarray:
        """Native-rate millivolts of samples ``[lo, hi)``, ``(n, n_leads)``: what
        ``wfdb.rdrecord(sampfrom=lo, sampto=hi, physical=True).p_signal`` gives, missing samples as 0."""
        span = copy.copy(self._record())
        span.d_signal = span.d_signal[lo:hi]
        return np.nan_to_num(np.asarray(span.dac(), dtype=np.float64))

    @property
    def leads(self) -> tuple[str, ...]:
        return tuple(str(s) for s in self._head().sig_name)

    @property
    def period(self) -> int:
        """Samples (at the target rate) before the loop repeats."""
        self._head()
        return self._period

    @property
    def block_len(self) -> int:
        self._head()
        return self._block_len

    @property
    def n_blocks(self) -> int:
        return -(-self.period // self.block_len)

    def resampled_mv(self, start: int, stop: int) -> np.ndarray:
        """Millivolts at the target rate for output samples ``[start, stop)`` of the unlooped record."""
        head = self._head()
        up, down = self._up, self._down
        if start % up or start < 0 or stop <= start:
            raise ValueError(f"bad span [{start}, {stop}) for up={up}")
        i0 = start // up * down
        i1 = -(-stop * down // up) + 1
        # Margin beyond the filter's half-length, a multiple of `down` so that the cut lands on a sample.
        reach = 2 * (-(-10 * max(up, down) // up) + 2)
        pad = -(-reach // down) * down
        lo, hi = max(0, i0 - pad), min(int(head.sig_len), i1 + pad)
        x = self._millivolts(lo, hi)
        y = resample_poly(x, up, down, axis=0)
        skip = (i0 - lo) * up // down
        out = y[skip : skip + stop - start].T
        if out.shape[1] < stop - start:
            out = np.pad(out, ((0, 0), (0, stop - start - out.shape[1])), mode="edge")
        return np.ascontiguousarray(out)

    def block(self, b: int) -> np.ndarray:
        """Block ``b`` of the loop, int16 ``(n_leads, block_len)`` (the last one is shorter); cached, read-only."""
        cached = self._blocks.get(b)
        if cached is not None:
            return cached
        if not 0 <= b < self.n_blocks:
            raise IndexError(f"block {b} outside 0..{self.n_blocks - 1}")
        start = b * self.block_len
        stop = min(start + self.block_len, self.period)
        mv = self.resampled_mv(start, stop)
        if b == 0:
            xf = self._xf
            tail = self.resampled_mv(self.period, self.period + xf)
            w = _crossfade_weights(xf)
            mv[:, :xf] = w * mv[:, :xf] + (1.0 - w) * tail
        blk = _readonly(to_adc(mv, self.gain))
        self._blocks[b] = blk
        return blk

    def segment(self, start: int, stop: int) -> np.ndarray:
        """Int16 samples ``[start, stop)`` of the endless loop."""
        src = MitdbSource(self, start)
        return src.read(stop - start)


class MitdbSource(_BlockSource):
    """Replays one MIT-BIH record from a given offset, looping seamlessly."""

    def __init__(self, record: MitdbRecord, offset: int = 0) -> None:
        super().__init__(record.sample_rate_hz, record.gain)
        self.record = record
        self.offset = int(offset) % record.period
        self._b = 0

    @property
    def leads(self) -> tuple[str, ...]:
        return self.record.leads

    def describe(self) -> str:
        return f"mitdb/{self.record.name}+{self.offset / self.sample_rate_hz:.1f}s"

    def _start(self) -> tuple[np.ndarray, int]:
        self._b = self.offset // self.record.block_len
        return self.record.block(self._b), self.offset - self._b * self.record.block_len

    def _next_block(self) -> np.ndarray:
        self._b = (self._b + 1) % self.record.n_blocks
        return self.record.block(self._b)


@functools.lru_cache(maxsize=512)
def mitdb_record(path: Path, sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ, gain: float = DEFAULT_GAIN) -> MitdbRecord:
    """The process-wide cached :class:`MitdbRecord` for a record path, so that beds share resampled blocks."""
    return MitdbRecord(path, sample_rate_hz, gain)


def mitdb_names(folder: Path) -> tuple[str, ...]:
    """Record names (``100``, ``101``, ...) in a MIT-BIH folder."""
    names = tuple(sorted(p.stem for p in Path(folder).glob("*.hea")))
    if not names:
        raise DataNotFoundError.for_folder("MIT-BIH records (mitdb/*.hea)", Path(folder))
    return names


class CincLibrary:
    """The CinC 2017 records of a folder, each resampled to the target rate once, lazily, and cached."""

    def __init__(
        self, folder: Path, sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ, gain: float = DEFAULT_GAIN
    ) -> None:
        self.folder = Path(folder)
        self.sample_rate_hz = float(sample_rate_hz)
        self.gain = float(gain)
        ref = self.folder / "REFERENCE.csv"
        if ref.is_file():
            with ref.open(newline="") as fh:
                rows = [r for r in csv.reader(fh) if r and r[0] != "record"]
            self.labels: dict[str, str] = {r[0]: r[1] if len(r) > 1 else "" for r in rows}
            self.names: tuple[str, ...] = tuple(r[0] for r in rows)
        else:
            self.names = tuple(sorted(p.stem for p in self.folder.glob("*.hea")))
            self.labels = {}
        if not self.names:
            raise DataNotFoundError.for_folder("CinC 2017 records (cinc2017/REFERENCE.csv)", self.folder)
        self._signals: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.names)

    def signal(self, index: int) -> np.ndarray:
        """Record ``index`` (modulo the count) as int16 ``(1, n)`` at the target rate; cached, read-only."""
        index %= len(self.names)
        cached = self._signals.get(index)
        if cached is not None:
            return cached
        path = self.folder / self.names[index]
        try:
            rec = wfdb.rdrecord(str(path), channels=[0], physical=True)
        except FileNotFoundError as exc:
            raise DataNotFoundError(f"CinC 2017 record {path} not found") from exc
        up, down = resample_ratio(rec.fs, self.sample_rate_hz)
        x = np.nan_to_num(np.asarray(rec.p_signal, dtype=np.float64)[:, 0])
        # Centre each record so that moving on to the next one does not leave a baseline step.
        x = x - np.median(x)
        y = resample_poly(x, up, down) if (up, down) != (1, 1) else x
        if y.size == 0:
            y = np.zeros(1)
        sig = _readonly(to_adc(y, self.gain).reshape(1, -1))
        self._signals[index] = sig
        return sig


@functools.lru_cache(maxsize=8)
def cinc_library(
    folder: Path, sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ, gain: float = DEFAULT_GAIN
) -> CincLibrary:
    """The process-wide cached :class:`CincLibrary` of a folder."""
    return CincLibrary(folder, sample_rate_hz, gain)


class CincSource(_BlockSource):
    """Replays CinC 2017 records (lead I) back to back from a first record and offset, so it never runs dry."""

    LEADS: tuple[str, ...] = ("I",)

    def __init__(self, library: CincLibrary, first: int, offset_fraction: float = 0.0) -> None:
        super().__init__(library.sample_rate_hz, library.gain)
        if not 0.0 <= offset_fraction < 1.0:
            raise ValueError(f"offset_fraction {offset_fraction} outside [0, 1)")
        self.library = library
        self.first = first % len(library)
        self.offset_fraction = offset_fraction
        self._index = self.first

    @property
    def leads(self) -> tuple[str, ...]:
        return self.LEADS

    def describe(self) -> str:
        return f"cinc2017/{self.library.names[self.first]}+{self.offset_fraction:.0%}"

    def _start(self) -> tuple[np.ndarray, int]:
        self._index = self.first
        sig = self.library.signal(self._index)
        return sig, int(self.offset_fraction * sig.shape[1])

    def _next_block(self) -> np.ndarray:
        self._index = (self._index + 1) % len(self.library)
        return self.library.signal(self._index)


# (centre s relative to R, width s, amplitude mV) per wave; lead II-like and V5-like.
_WAVES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "II": (
        (-0.20, 0.025, 0.15),
        (-0.035, 0.010, -0.10),
        (0.0, 0.011, 1.20),
        (0.035, 0.011, -0.25),
        (0.26, 0.045, 0.32),
    ),
    "V5": ((-0.20, 0.025, 0.10), (-0.035, 0.010, -0.15), (0.0, 0.012, 1.60), (0.04, 0.012, -0.35), (0.27, 0.050, 0.40)),
}


class SyntheticSource(_BlockSource):
    """A seeded ECG-like waveform: P-QRS-T as sums of Gaussians per beat, with heart-rate variability.

    With ``irregular`` the rhythm is AF-like: no P waves, irregularly irregular RR intervals and 4-8 Hz
    fibrillatory waves. The output depends only on the seed, never on how it is read.
    """

    LEADS: tuple[str, ...] = ("II", "V5")

    def __init__(
        self,
        seed: int,
        *,
        irregular: bool = False,
        heart_rate_bpm: float | None = None,
        sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ,
        gain: float = DEFAULT_GAIN,
        noise_mv: float = 0.01,
    ) -> None:
        super().__init__(sample_rate_hz, gain)
        self.seed = seed
        self.irregular = irregular
        self._rng = np.random.default_rng([seed, 0x5EC6])
        rng = self._rng
        if heart_rate_bpm is None:
            heart_rate_bpm = float(rng.uniform(85.0, 120.0) if irregular else rng.uniform(55.0, 95.0))
        if not 20.0 <= heart_rate_bpm <= 300.0:
            raise ValueError(f"heart_rate_bpm {heart_rate_bpm} outside [20, 300]")
        self.heart_rate_bpm = heart_rate_bpm
        self._mean_rr_s = 60.0 / heart_rate_bpm
        self._noise_mv = noise_mv
        fs = self._sample_rate_hz
        self._pre = round(0.30 * fs)
        t = (np.arange(round(0.95 * fs)) - self._pre) / fs
        tpl = np.zeros((len(self.LEADS), t.size))
        for li, lead in enumerate(self.LEADS):
            for wi, (mu, sd, amp) in enumerate(_WAVES[lead]):
                if irregular and wi == 0:
                    continue
                a = amp * rng.uniform(0.8, 1.2)
                tpl[li] += a * np.exp(-0.5 * ((t - mu * rng.uniform(0.95, 1.05)) / sd) ** 2)
        self._template = tpl
        self._block_len = round(_SYNTH_BLOCK_S * fs)
        self._resp_hz = float(rng.uniform(0.18, 0.3))
        self._wander = rng.uniform(0.03, 0.12, size=(len(self.LEADS), 1))
        self._wander_hz = float(rng.uniform(0.05, 0.2))
        self._phase = rng.uniform(0, 2 * np.pi, size=(len(self.LEADS), 1))
        self._f_hz = float(rng.uniform(4.5, 7.5))
        self._f_mv = rng.uniform(0.03, 0.08, size=(len(self.LEADS), 1)) if irregular else None
        self._next_r_s = float(rng.uniform(0.35, 0.35 + self._mean_rr_s))
        self._generated = 0
        self._carry = np.zeros((len(self.LEADS), tpl.shape[1]))

    @property
    def leads(self) -> tuple[str, ...]:
        return self.LEADS

    def describe(self) -> str:
        kind = "af" if self.irregular else "sinus"
        return f"synthetic/{kind}@{self.heart_rate_bpm:.0f}bpm#{self.seed}"

    def _rr_s(self, t_s: float) -> float:
        rng = self._rng
        if self.irregular:
            return float(np.clip(self._mean_rr_s * np.exp(0.25 * rng.standard_normal()), 0.3, 2.0))
        rsa = 0.05 * math.sin(2 * math.pi * self._resp_hz * t_s)
        return self._mean_rr_s * (1.0 + rsa + 0.02 * float(rng.standard_normal()))

    def _start(self) -> tuple[np.ndarray, int]:
        # Start part-way into the first block so that beds do not all generate a new block on the same tick.
        skip = int(np.random.default_rng([self.seed, 0x5EC7]).integers(self._block_len))
        return self._next_block(), skip

    def _next_block(self) -> np.ndarray:
        fs, n, tpl = self._sample_rate_hz, self._block_len, self._template
        start = self._generated
        acc = np.zeros((tpl.shape[0], n + tpl.shape[1]))
        acc[:, : self._carry.shape[1]] += self._carry
        while True:
            onset = round(self._next_r_s * fs) - self._pre
            if onset >= start + n:
                break
            i = onset - start
            acc[:, i : i + tpl.shape[1]] += tpl * (1.0 + 0.03 * self._rng.standard_normal())
            self._next_r_s += self._rr_s(self._next_r_s)
        self._carry = acc[:, n:].copy()
        t = (start + np.arange(n)) / fs
        mv = acc[:, :n]
        mv += self._wander * np.sin(2 * np.pi * self._wander_hz * t + self._phase)
        if self._f_mv is not None:
            slow = 0.5 * np.sin(2 * np.pi * 0.15 * t)
            mv += self._f_mv * np.sin(2 * np.pi * self._f_hz * t + self._phase + slow)
        mv += self._noise_mv * self._rng.standard_normal(mv.shape)
        self._generated += n
        return _readonly(to_adc(mv, self._gain))


class AfLibrary:
    """Atrial fibrillation runs of MIT-BIH records (from the ``(AFIB`` rhythm notes), served at the target rate."""

    def __init__(
        self,
        folder: Path,
        sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ,
        records: Sequence[str] = AF_RECORDS,
        margin_s: float = 1.0,
    ) -> None:
        self.folder = Path(folder)
        self.sample_rate_hz = float(sample_rate_hz)
        self.records = tuple(records)
        self.margin_s = margin_s
        self._runs: list[tuple[str, int, int]] | None = None

    def runs(self) -> list[tuple[str, int, int]]:
        """``(record, start, stop)`` in native samples of every AF run, trimmed by the margin at both ends."""
        if self._runs is None:
            runs: list[tuple[str, int, int]] = []
            for name in self.records:
                path = self.folder / name
                try:
                    ann = wfdb.rdann(str(path), "atr")
                    sig_len = int(wfdb.rdheader(str(path)).sig_len)
                except FileNotFoundError as exc:
                    raise DataNotFoundError.for_folder(f"MIT-BIH AF record {name}", self.folder) from exc
                margin = round(self.margin_s * ann.fs) if ann.fs else 360
                changes = [
                    (int(s), (note or "").strip("\x00").strip())
                    for s, note in zip(ann.sample, ann.aux_note, strict=True)
                    if (note or "").strip("\x00").strip().startswith("(")
                ]
                for j, (s, rhythm) in enumerate(changes):
                    stop = changes[j + 1][0] if j + 1 < len(changes) else sig_len
                    if rhythm == "(AFIB" and stop - s > 2 * margin:
                        runs.append((name, s + margin, stop - margin))
            if not runs:
                raise DataNotFoundError(f"no (AFIB runs found in MIT-BIH records {self.records} in {self.folder}")
            self._runs = runs
        return self._runs

    def episode(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """``n`` samples (float mV, ``(n_leads, n)``) of real AF at the target rate, and where they came from."""
        runs = self.runs()
        header = wfdb.rdheader(str(self.folder / runs[0][0]))
        up, down = resample_ratio(header.fs, self.sample_rate_hz)
        need = -(-n * down // up) + 1
        fitting = [r for r in runs if r[2] - r[1] >= need]
        if fitting:
            name, start, stop = fitting[int(rng.integers(len(fitting)))]
            start += int(rng.integers(stop - start - need + 1))
            stop = start + need
        else:
            name, start, stop = max(runs, key=lambda r: r[2] - r[1])
        pad = 4 * down
        sig_len = int(wfdb.rdheader(str(self.folder / name)).sig_len)
        lo, hi = max(0, start - pad), min(sig_len, stop + pad)
        rec = wfdb.rdrecord(str(self.folder / name), sampfrom=lo, sampto=hi, physical=True)
        y = resample_poly(np.nan_to_num(np.asarray(rec.p_signal, dtype=np.float64)), up, down, axis=0).T
        skip = round((start - lo) * up / down)
        keep = math.floor((stop - start) * up / down)
        y = y[:, skip : skip + keep]
        where = f"mitdb/{name}@{start / header.fs:.1f}s"
        return (y[:, :n] if y.shape[1] >= n else loop_crossfaded(y, n, self.sample_rate_hz)), where


def loop_crossfaded(x: np.ndarray, n: int, sample_rate_hz: float, crossfade_s: float = _LOOP_CROSSFADE_S) -> np.ndarray:
    """Repeat ``x`` (``(n_leads, m)``) to ``n`` samples, cross-fading each wrap so that it has no step."""
    m = x.shape[1]
    xf = min(max(1, round(crossfade_s * sample_rate_hz)), m // 2)
    period = m - xf
    one = x[:, :period].copy()
    w = _crossfade_weights(xf)
    one[:, :xf] = w * x[:, :xf] + (1.0 - w) * x[:, period:]
    reps = -(-n // period)
    out = np.tile(one, (1, reps))[:, :n]
    out[:, : min(xf, n)] = x[:, : min(xf, n)]
    return out


def bed_seed(seed: int, bed_index: int, purpose: int = 0) -> int:
    """A per-bed 63-bit seed derived from the run seed, stable across runs."""
    ss = np.random.SeedSequence([seed, bed_index, purpose])
    return int(ss.generate_state(2, np.uint64)[0] >> np.uint64(1))


def make_sources(
    kind: SourceKind,
    n_beds: int,
    data_dir: Path | None,
    seed: int = 0,
    *,
    sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ,
    gain: float = DEFAULT_GAIN,
    synthetic_af_fraction: float = 0.0,
) -> list[Source]:
    """One source per bed, each with a different record and offset, deterministic for a seed.

    ``data_dir`` is the folder holding ``mitdb/`` and ``cinc2017/``. Records repeat beyond their count
    (48 for MIT-BIH) with evenly spread offsets. Nothing is read here beyond headers: records load lazily.
    """
    if n_beds < 1:
        raise ConfigError(f"n_beds must be >= 1, got {n_beds}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng([seed, 0x50C])
    if kind == "synthetic":
        if not 0.0 <= synthetic_af_fraction <= 1.0:
            raise ConfigError(f"synthetic_af_fraction {synthetic_af_fraction} outside [0, 1]")
        irregular = rng.random(n_beds) < synthetic_af_fraction
        return [
            SyntheticSource(bed_seed(seed, i), irregular=bool(irregular[i]), sample_rate_hz=sample_rate_hz, gain=gain)
            for i in range(n_beds)
        ]
    if kind not in SOURCE_KINDS:
        raise ConfigError(f"unknown source {kind!r}; expected one of {', '.join(SOURCE_KINDS)}")
    if data_dir is None or not Path(data_dir).is_dir():
        raise DataNotFoundError.for_folder("ECG data folder", None if data_dir is None else Path(data_dir))
    sources: list[Source] = []
    if kind == "mitdb":
        folder = Path(data_dir) / "mitdb"
        names = mitdb_names(folder)
        order = rng.permutation(len(names))
        phase = rng.random(len(names))
        reps = -(-n_beds // len(names))
        for i in range(n_beds):
            r = int(order[i % len(names)])
            rec = mitdb_record(folder / names[r], float(sample_rate_hz), float(gain))
            offset = int((i // len(names) + phase[r]) / reps * rec.period)
            sources.append(MitdbSource(rec, offset))
        return sources
    lib = cinc_library(Path(data_dir) / "cinc2017", float(sample_rate_hz), float(gain))
    order = rng.permutation(len(lib))
    phase = rng.random(n_beds)
    reps = -(-n_beds // len(lib))
    for i in range(n_beds):
        frac = min((i // len(lib) + float(phase[i])) / reps, math.nextafter(1.0, 0.0))
        sources.append(CincSource(lib, int(order[i % len(lib)]), frac))
    return sources
