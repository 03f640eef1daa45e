"""Binary codec for waveform chunks and JSON codec for score records.

Waveform layout (little endian), version 1::

    magic "HW" | u8 version | u8 dtype (1=int16, 2=float32) | u64 seq | f64 t0_s | f32 sample_rate_hz
    | f32 gain | u8 n_leads | u32 n_samples | u8 bed_id_len | bed_id utf-8
    | n_leads x (u8 name_len | name ascii) | samples, lead-major (n_leads x n_samples)

A 1-s, 2-lead int16 chunk at 250 Hz is 1,000 bytes of samples plus ~40 bytes of header,
against ~10 kB as a JSON list of floats.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from ingest.errors import DecodeError
from ingest.schemas import (
    BED_ID_RE,
    PLAN_SCHEMA_VERSION,
    SCORE_SCHEMA_VERSION,
    WAVEFORM_SCHEMA_VERSION,
    PlanRecord,
    ScoreRecord,
    WaveformChunk,
)

MAGIC = b"HW"
_HEAD = struct.Struct("<2sBBQdffBIB")
_DTYPES: dict[int, np.dtype[Any]] = {1: np.dtype("<i2"), 2: np.dtype("<f4")}
_DTYPE_CODES: dict[np.dtype[Any], int] = {np.dtype("<i2"): 1, np.dtype("<f4"): 2}

#: Limits a message must respect; anything beyond is refused before numpy sees it.
MAX_MESSAGE_BYTES = 256 * 1024
MAX_LEADS = 12
MAX_CHUNK_S = 10.0
MIN_SAMPLE_RATE_HZ = 50.0
MAX_SAMPLE_RATE_HZ = 2000.0
MAX_STRIP_SAMPLES = 2000
#: ADC units per millivolt; below this an int16 sample can exceed float32's range once converted to millivolts.
MIN_GAIN = 1e-3


def encode_chunk(chunk: WaveformChunk) -> bytes:
    """Serialise a chunk; raises ``ValueError`` for a chunk that the decoder would refuse."""
    samples = np.ascontiguousarray(chunk.samples)
    if samples.dtype.newbyteorder("<") not in _DTYPE_CODES:
        raise ValueError(f"samples must be int16 or float32, not {samples.dtype}")
    samples = samples.astype(samples.dtype.newbyteorder("<"), copy=False)
    if samples.ndim != 2 or samples.shape[0] != len(chunk.leads):
        raise ValueError(f"samples shape {samples.shape} does not match {len(chunk.leads)} leads")
    try:
        _check_header(chunk.seq, chunk.t0_s, chunk.sample_rate_hz, chunk.gain, len(chunk.leads), samples.shape[1])
        _check_bed_id(chunk.bed_id)
        for name in chunk.leads:
            _check_lead_name(name.encode("ascii", errors="replace"))
        if samples.dtype == np.dtype("<f4") and not np.isfinite(samples).all():
            raise DecodeError("non-finite", "samples contain NaN or Inf")
    except DecodeError as exc:
        raise ValueError(f"chunk would be refused by the decoder: {exc}") from exc
    bed = chunk.bed_id.encode("utf-8")
    try:
        head = _HEAD.pack(
            MAGIC,
            WAVEFORM_SCHEMA_VERSION,
            _DTYPE_CODES[samples.dtype],
            chunk.seq,
            chunk.t0_s,
            chunk.sample_rate_hz,
            chunk.gain,
            len(chunk.leads),
            samples.shape[1],
            len(bed),
        )
    except (struct.error, OverflowError) as exc:  # a gain beyond float32's range
        raise ValueError(f"chunk header does not fit its binary layout: {exc}") from exc
    names = b"".join(bytes([len(n)]) + n.encode("ascii") for n in chunk.leads)
    data = head + bed + names + samples.tobytes()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"chunk is {len(data)} bytes, over the {MAX_MESSAGE_BYTES}-byte limit")
    return data


def _check_header(seq: int, t0_s: float, fs: float, gain: float, n_leads: int, n_samples: int) -> None:
    if not 0 <= seq < 2**63:
        raise DecodeError("bad-seq", f"sequence number {seq}")
    if not math.isfinite(fs) or not MIN_SAMPLE_RATE_HZ <= fs <= MAX_SAMPLE_RATE_HZ:
        raise DecodeError("bad-rate", f"sample rate {fs} Hz outside [{MIN_SAMPLE_RATE_HZ}, {MAX_SAMPLE_RATE_HZ}]")
    if not math.isfinite(t0_s) or t0_s < 0:
        raise DecodeError("bad-timestamp", f"t0_s {t0_s}")
    if not math.isfinite(gain) or gain < MIN_GAIN:
        raise DecodeError("bad-gain", f"gain {gain} (at least {MIN_GAIN} ADC units per mV)")
    if not 1 <= n_leads <= MAX_LEADS:
        raise DecodeError("bad-shape", f"{n_leads} leads")
    if not 1 <= n_samples <= MAX_CHUNK_S * fs:
        raise DecodeError("bad-shape", f"{n_samples} samples at {fs} Hz")


def _check_bed_id(bed_id: str) -> None:
    # fullmatch: the pattern's "$" also matches before a trailing newline ("bed-001\n")
    if not BED_ID_RE.fullmatch(bed_id):
        raise DecodeError("bad-bed-id", f"bed id {bed_id[:80]!r} is not a short printable identifier")


def _check_lead_name(name: bytes) -> None:
    if not 1 <= len(name) <= 16 or not name.isascii() or not name.decode().isprintable():
        raise DecodeError("bad-lead-name", f"lead name {name[:40]!r}")


def decode_chunk(data: bytes) -> WaveformChunk:
    """Parse and validate a chunk; raises :class:`DecodeError` with a reason tag on any defect."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("wrong-type", f"expected bytes, got {type(data).__name__}")
    # Immutable bytes: the decoded samples are a read-only view that no caller's buffer can change.
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError("oversized", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    if len(data) < _HEAD.size:
        raise DecodeError("truncated", f"{len(data)} bytes is shorter than the {_HEAD.size}-byte header")
    magic, version, dtype_code, seq, t0_s, fs, gain, n_leads, n_samples, bed_len = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError("bad-magic", f"magic {magic!r} is not {MAGIC!r}")
    if version != WAVEFORM_SCHEMA_VERSION:
        raise DecodeError("wrong-schema", f"schema version {version} is not {WAVEFORM_SCHEMA_VERSION}")
    if dtype_code not in _DTYPES:
        raise DecodeError("wrong-schema", f"unknown dtype code {dtype_code}")
    _check_header(seq, t0_s, fs, gain, n_leads, n_samples)
    pos = _HEAD.size
    try:
        bed_id = bytes(data[pos : pos + bed_len]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("bad-bed-id", "bed id is not utf-8") from exc
    if len(bed_id.encode()) != bed_len:
        raise DecodeError("truncated", "bed id cut short")
    _check_bed_id(bed_id)
    pos += bed_len
    leads = []
    for _ in range(n_leads):
        if pos >= len(data):
            raise DecodeError("truncated", "lead names cut short")
        name_len = data[pos]
        name = bytes(data[pos + 1 : pos + 1 + name_len])
        if len(name) != name_len:
            raise DecodeError("truncated", "lead name cut short")
        _check_lead_name(name)
        leads.append(name.decode())
        pos += 1 + name_len
    dtype = _DTYPES[dtype_code]
    expected = n_leads * n_samples * dtype.itemsize
    if len(data) - pos != expected:
        raise DecodeError("truncated" if len(data) - pos < expected else "trailing-bytes",
                          f"{len(data) - pos} sample bytes, expected {expected}")
    samples = np.frombuffer(data, dtype=dtype, count=n_leads * n_samples, offset=pos).reshape(n_leads, n_samples)
    if dtype_code == 2 and not np.isfinite(samples).all():
        raise DecodeError("non-finite", "samples contain NaN or Inf")
    return WaveformChunk(
        bed_id=bed_id,
        seq=seq,
        t0_s=t0_s,
        sample_rate_hz=float(fs),
        leads=tuple(leads),
        samples=samples,
        gain=float(gain),
    )


def encode_score(score: ScoreRecord) -> bytes:
    """Serialise a score as compact JSON with a schema version."""
    _check_score(score)
    # a flat copy: dataclasses.asdict deep-copies the 200-value strip and was a third of the worker's
    # publishing time at 1,000 beds
    body = {name: getattr(score, name) for name in _SCORE_FIELD_NAMES}
    body["models"] = list(score.models)
    body["strip_mv"] = list(score.strip_mv)
    body["extra"] = dict(score.extra)
    body["v"] = SCORE_SCHEMA_VERSION
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


_SCORE_FIELDS = {f.name: f for f in dataclasses.fields(ScoreRecord)}
_SCORE_FIELD_NAMES = tuple(_SCORE_FIELDS)
_SCORE_STATES = ("ok", "unscorable")


def _json_record(data: bytes | None, version: int, kind: str) -> dict[str, Any]:
    """The fields of a versioned JSON record (``v`` removed), or :class:`DecodeError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("wrong-type", f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError("oversized", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        body = json.loads(bytes(data), parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError("undecodable", str(exc)[:200]) from exc
    if not isinstance(body, dict) or body.pop("v", None) != version:
        raise DecodeError("wrong-schema", f"not a version-{version} {kind} record")
    return body


def decode_score(data: bytes | None) -> ScoreRecord:
    """Parse and check a score record; raises :class:`DecodeError` on any defect, never anything else."""
    body = _json_record(data, SCORE_SCHEMA_VERSION, "score")
    unknown = set(body) - set(_SCORE_FIELDS)
    if unknown:
        raise DecodeError("wrong-schema", f"unknown fields {sorted(unknown)}")
    if not isinstance(body.get("models", []), list) or not isinstance(body.get("strip_mv", []), list):
        raise DecodeError("wrong-schema", "models and strip_mv must be lists")
    try:
        record = ScoreRecord(
            **{**body, "models": tuple(body.get("models", ())), "strip_mv": tuple(body.get("strip_mv", ()))}
        )
    except TypeError as exc:
        raise DecodeError("wrong-schema", str(exc)[:200]) from exc
    _check_score(record)
    return record


def _finite_number(x: object) -> bool:
    """A real int or float that JSON can carry (``1e999`` parses as inf; a 400-digit int overflows a float)."""
    if not isinstance(x, int | float) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _finite_numbers(values: Sequence[object]) -> bool:
    """``all(_finite_number(x) for x in values)``, in a fifth of the time for the usual case (every value a
    float): a NaN or an infinity makes the exact sum non-finite, and an overflow falls back to the check one
    by one. A score's 200-value strip was half of its encoding time on the worker's event loop."""
    if all(type(x) is float for x in values):
        try:
            return math.isfinite(math.fsum(values))  # type: ignore[arg-type]
        except (OverflowError, ValueError):  # an intermediate overflow, or inf - inf: one by one
            pass
    return all(_finite_number(x) for x in values)


def _check_score(r: ScoreRecord) -> None:
    number = _finite_number
    if not isinstance(r.bed_id, str) or not BED_ID_RE.fullmatch(r.bed_id):
        raise DecodeError("bad-bed-id", f"bed id {str(r.bed_id)[:80]!r}")
    if r.state not in _SCORE_STATES:
        raise DecodeError("wrong-schema", f"state {str(r.state)[:40]!r} is not one of {_SCORE_STATES}")
    for name in ("window_end_s", "window_s", "scored_at_s"):
        if not number(getattr(r, name)):
            raise DecodeError("wrong-schema", f"{name} is not a number")
    for name in ("risk", "quality", "heart_rate_bpm"):
        value = getattr(r, name)
        if value is not None and not number(value):
            raise DecodeError("wrong-schema", f"{name} is not a number")
    if r.risk is not None and not 0.0 <= r.risk <= 1.0:
        raise DecodeError("wrong-schema", f"risk {r.risk} outside [0, 1]")
    if r.state == "ok" and r.risk is None:
        raise DecodeError("wrong-schema", "an ok score needs a risk")
    if not all(isinstance(m, str) for m in r.models) or not isinstance(r.complete, bool):
        raise DecodeError("wrong-schema", "models must be a list of names and complete a boolean")
    if len(r.strip_mv) > MAX_STRIP_SAMPLES or not _finite_numbers(r.strip_mv):
        raise DecodeError("wrong-schema", f"strip_mv must be at most {MAX_STRIP_SAMPLES} finite numbers")
    if r.strip_hz is not None and not (number(r.strip_hz) and 0 < r.strip_hz <= 500):
        raise DecodeError("wrong-schema", "strip_hz must be in (0, 500]")
    if r.strip_mv and r.strip_hz is None:
        raise DecodeError("wrong-schema", "a strip needs strip_hz in (0, 500]")
    if r.reason is not None and not isinstance(r.reason, str):
        raise DecodeError("wrong-schema", "reason must be a string")
    if not isinstance(r.seq_last, int) or isinstance(r.seq_last, bool):
        raise DecodeError("wrong-schema", "seq_last must be an integer")
    if not isinstance(r.extra, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str) or number(v) or isinstance(v, bool))
        for k, v in r.extra.items()
    ):
        raise DecodeError("wrong-schema", "extra must map names to strings, finite numbers or null")


_PLAN_FIELDS = {f.name: f for f in dataclasses.fields(PlanRecord)}


def encode_plan(plan: PlanRecord) -> bytes:
    """Serialise a plan record as compact JSON with a schema version."""
    _check_plan(plan)
    body = dataclasses.asdict(plan)
    body["members"] = list(plan.members)
    body["previous"] = list(plan.previous)
    body["v"] = PLAN_SCHEMA_VERSION
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def decode_plan(data: bytes | None) -> PlanRecord:
    """Parse and check a plan record; raises :class:`DecodeError` on any defect, never anything else."""
    body = _json_record(data, PLAN_SCHEMA_VERSION, "plan")
    unknown = set(body) - set(_PLAN_FIELDS)
    missing = {n for n, f in _PLAN_FIELDS.items()
               if f.default is dataclasses.MISSING and n not in body}
    if unknown or missing:
        raise DecodeError("wrong-schema", f"unknown fields {sorted(unknown)}, missing {sorted(missing)}")
    if not isinstance(body["members"], list) or not isinstance(body["previous"], list):
        raise DecodeError("wrong-schema", "members and previous must be lists")
    record = PlanRecord(**{**body, "members": tuple(body["members"]), "previous": tuple(body["previous"])})
    _check_plan(record)
    return record


def _check_plan(p: PlanRecord) -> None:
    number = _finite_number

    if not isinstance(p.worker_id, str) or not p.worker_id or len(p.worker_id) > 200:
        raise DecodeError("wrong-schema", "worker_id must be a non-empty string")
    if not isinstance(p.plan_id, int) or isinstance(p.plan_id, bool) or p.plan_id < 0:
        raise DecodeError("wrong-schema", "plan_id must be an integer >= 0")
    if not isinstance(p.reason, str) or len(p.reason) > 500:
        raise DecodeError("wrong-schema", "reason must be a string of at most 500 characters")
    for name in ("members", "previous"):
        ids = getattr(p, name)
        if len(ids) > 64 or not all(isinstance(m, str) and 0 < len(m) <= 200 for m in ids):
            raise DecodeError("wrong-schema", f"{name} must be at most 64 model ids")
    if not p.members:
        raise DecodeError("wrong-schema", "a plan needs at least one member")
    for name in ("at_s", "budget_ms", "predicted_p50_ms", "predicted_p99_ms", "objective", "hop_s",
                 "windows_per_s", "slowdown"):
        if not number(getattr(p, name)):
            raise DecodeError("wrong-schema", f"{name} is not a finite number")
    if not isinstance(p.beds, int) or isinstance(p.beds, bool) or p.beds < 0:
        raise DecodeError("wrong-schema", "beds must be an integer >= 0")
    if p.measured_p99_ms is not None and not number(p.measured_p99_ms):
        raise DecodeError("wrong-schema", "measured_p99_ms is not a finite number")
