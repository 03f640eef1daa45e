"""Property tests of the codec: any bytes decode to a valid record or raise DecodeError, and records round-trip."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ingest.codec import (
    MAX_CHUNK_S,
    MAX_LEADS,
    MAX_MESSAGE_BYTES,
    MAX_SAMPLE_RATE_HZ,
    MIN_GAIN,
    MIN_SAMPLE_RATE_HZ,
    decode_chunk,
    decode_plan,
    decode_score,
    encode_chunk,
    encode_plan,
    encode_score,
)
from ingest.errors import DecodeError
from ingest.schemas import BED_ID_RE, PlanRecord, ScoreRecord, WaveformChunk

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEAD = struct.Struct("<2sBBQdffBIB")

# --- waveform chunks ---------------------------------------------------------------------------------------------

bed_ids = st.from_regex(BED_ID_RE, fullmatch=True)
lead_names = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=16)
f32 = {"width": 32, "allow_nan": False, "allow_infinity": False}


@st.composite
def valid_chunks(draw: st.DrawFn, max_samples: int = 300) -> WaveformChunk:
    """Chunks the decoder must accept; rate and gain are float32 values, as on the wire."""
    fs = draw(st.floats(MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ, **f32))
    leads = tuple(draw(st.lists(lead_names, min_size=1, max_size=MAX_LEADS)))
    n = draw(st.integers(1, min(max_samples, int(MAX_CHUNK_S * fs))))
    if draw(st.booleans()):
        samples = draw(hnp.arrays(np.dtype("<i2"), (len(leads), n)))
        gain = draw(st.floats(float(np.float32(MIN_GAIN)), 1e6, **f32))
    else:
        samples = draw(hnp.arrays(np.dtype("<f4"), (len(leads), n), elements=st.floats(**f32)))
        gain = 1.0
    return WaveformChunk(
        bed_id=draw(bed_ids), seq=draw(st.integers(0, 2**63 - 1)), t0_s=draw(st.floats(0, 1e12)),
        sample_rate_hz=fs, leads=leads, samples=samples, gain=gain,
    )


def assert_valid_chunk(chunk: WaveformChunk, data: bytes) -> None:
    """Everything the worker relies on in a decoded chunk, and the bytes it came from re-encode exactly."""
    assert isinstance(chunk, WaveformChunk)
    assert BED_ID_RE.fullmatch(chunk.bed_id)
    assert 0 <= chunk.seq < 2**63
    assert math.isfinite(chunk.t0_s) and chunk.t0_s >= 0
    assert MIN_SAMPLE_RATE_HZ <= chunk.sample_rate_hz <= MAX_SAMPLE_RATE_HZ
    assert math.isfinite(chunk.gain) and chunk.gain >= MIN_GAIN
    assert 1 <= len(chunk.leads) <= MAX_LEADS
    assert all(1 <= len(n) <= 16 and n.isascii() and n.isprintable() for n in chunk.leads)
    assert chunk.samples.dtype in (np.dtype("<i2"), np.dtype("<f4"))
    assert chunk.samples.shape == (len(chunk.leads), chunk.n_samples)
    assert 1 <= chunk.n_samples <= MAX_CHUNK_S * chunk.sample_rate_hz
    with np.errstate(over="raise"):
        assert np.isfinite(chunk.millivolts()).all()
    assert encode_chunk(chunk) == bytes(data)


def decodes_or_refuses(data: bytes) -> str:
    """Decode ``data``: a valid chunk (``"ok"``) or the DecodeError's reason; anything else fails the test."""
    try:
        chunk = decode_chunk(data)
    except DecodeError as exc:
        assert exc.reason and exc.detail is not None
        return exc.reason
    assert_valid_chunk(chunk, data)
    return "ok"


@FAST
@given(valid_chunks())
def test_valid_chunks_round_trip_exactly(chunk: WaveformChunk) -> None:
    data = encode_chunk(chunk)
    back = decode_chunk(data)
    assert (back.bed_id, back.seq, back.t0_s, back.leads) == (chunk.bed_id, chunk.seq, chunk.t0_s, chunk.leads)
    assert back.sample_rate_hz == chunk.sample_rate_hz and back.gain == chunk.gain
    assert back.samples.dtype == chunk.samples.dtype
    np.testing.assert_array_equal(back.samples, chunk.samples)
    assert_valid_chunk(back, data)


@FAST
@given(st.binary(max_size=4096))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    decodes_or_refuses(data)


@st.composite
def mutated_chunks(draw: st.DrawFn) -> bytes:
    """A valid chunk's bytes, then cut, overwritten, extended or shortened a few times."""
    data = bytearray(encode_chunk(draw(valid_chunks(max_samples=40))))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["cut", "set", "insert", "delete", "append"]))
        pos = draw(st.integers(0, len(data)))
        if op == "cut":
            del data[pos:]
        elif op == "set" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


@FAST
@given(mutated_chunks())
def test_mutated_chunks_decode_or_raise_decode_error(data: bytes) -> None:
    decodes_or_refuses(data)


@st.composite
def forged_chunks(draw: st.DrawFn) -> bytes:
    """Bytes laid out as a chunk by hand, with up to three fields (or declared lengths) hostile."""
    hostile = set(draw(st.lists(st.sampled_from(FORGEABLE), max_size=3, unique=True)))

    def pick(name: str, plausible: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
        return draw(bad if name in hostile else plausible)

    fs = pick("fs", st.floats(MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ, width=32), st.floats(width=32))
    bed = pick("bed", bed_ids.map(str.encode), hostile_ids)[:255]
    names = pick("names", st.lists(lead_names.map(str.encode), min_size=1, max_size=MAX_LEADS),
                 st.lists(st.binary(max_size=20), max_size=MAX_LEADS + 2))
    dtype_code = pick("dtype", st.sampled_from([1, 2]), st.integers(0, 255))
    n = draw(st.integers(1, 40))
    if dtype_code == 2:  # float32 samples, finite unless hostile
        values = st.floats(width=32) if "samples" in hostile else st.floats(**f32)
        samples = np.array(draw(st.lists(values, min_size=n * len(names), max_size=n * len(names))), "<f4").tobytes()
    else:
        samples = draw(st.binary(min_size=2 * n * len(names), max_size=2 * n * len(names)))
    head = HEAD.pack(
        pick("magic", st.just(b"HW"), st.binary(min_size=2, max_size=2)),
        pick("version", st.just(1), st.integers(0, 255)),
        dtype_code,
        pick("seq", st.integers(0, 2**63 - 1), st.integers(0, 2**64 - 1)),
        pick("t0", st.floats(0, 2e9), st.floats()),
        fs,
        pick("gain", st.floats(float(np.float32(MIN_GAIN)), 1e6, **f32), st.floats(width=32)),
        pick("n_leads", st.just(len(names)), st.integers(0, 255)),
        pick("n_samples", st.just(n), st.integers(0, 2**32 - 1)),
        pick("bed_len", st.just(len(bed)), st.integers(0, 255)),
    )
    body = bed + b"".join(bytes([min(len(x), 255)]) + x[:255] for x in names)
    tail = pick("tail", st.just(b""), st.binary(min_size=1, max_size=8))
    return head + body + samples + tail


FORGEABLE = ("fs", "bed", "names", "dtype", "samples", "magic", "version", "seq", "t0", "gain", "n_leads",
             "n_samples", "bed_len", "tail")
hostile_ids = st.one_of(
    bed_ids.map(lambda b: (b + "\n").encode()),
    st.text(max_size=70).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=70),
    st.just(b"b" * 255),
)


@FAST
@given(forged_chunks())
def test_forged_headers_decode_or_raise_decode_error(data: bytes) -> None:
    decodes_or_refuses(data)


def test_oversized_and_non_bytes_are_refused() -> None:
    assert decodes_or_refuses(b"\x00" * (MAX_MESSAGE_BYTES + 1)) == "oversized"
    for value in (None, "HW", 42, [1, 2]):
        try:
            decode_chunk(value)  # type: ignore[arg-type]
        except DecodeError as exc:
            assert exc.reason == "wrong-type"
        else:  # pragma: no cover - the assertion explains
            raise AssertionError(f"{value!r} decoded")


#: Values at the edges of float32 and of the codec's limits.
edge_floats = st.sampled_from([0.0, -0.0, -1.0, 1e-40, 1e-3, 0.00099999, 49.99, 2000.01, 3.4028235677973366e38, 1e300,
                               math.inf, -math.inf, math.nan])


@st.composite
def any_chunks(draw: st.DrawFn) -> WaveformChunk:
    """A valid chunk with one or two fields replaced by any value of their type."""
    hostile: dict[str, st.SearchStrategy[Any]] = {
        "bed_id": st.one_of(st.text(max_size=70), bed_ids.map(lambda b: b + "\n")),
        "seq": st.integers(-(2**64), 2**65),
        "t0_s": st.one_of(st.floats(), edge_floats),
        "sample_rate_hz": st.one_of(st.floats(), edge_floats),
        "gain": st.one_of(st.floats(), edge_floats),
        "leads": st.lists(st.one_of(lead_names, st.text(max_size=20)), max_size=MAX_LEADS + 2).map(tuple),
        "samples": st.sampled_from([np.int16, np.float32, np.float64, np.int32]).flatmap(
            lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=3, max_side=20))),
    }
    base = draw(valid_chunks(max_samples=30))
    names = draw(st.lists(st.sampled_from(sorted(hostile)), min_size=1, max_size=2, unique=True))
    return dataclasses.replace(base, **{name: draw(hostile[name]) for name in names})


@FAST
@given(any_chunks())
@example(WaveformChunk("bed-001", 0, 0.0, 250.0, ("I",), np.ones((1, 5), np.int16), 3.4028235677973366e38))
@example(WaveformChunk("bed-001", 0, 0.0, 250.0, ("I",), np.ones((1, 5), np.int16), 1e-40))
@example(WaveformChunk("bed-001\n", 0, 0.0, 250.0, ("I",), np.ones((1, 5), np.int16), 200.0))
def test_encoder_refuses_with_value_error_or_round_trips(chunk: WaveformChunk) -> None:
    try:
        data = encode_chunk(chunk)
    except ValueError:
        return
    back = decode_chunk(data)
    assert_valid_chunk(back, data)
    assert back.bed_id == chunk.bed_id and back.seq == chunk.seq and back.leads == chunk.leads
    assert back.sample_rate_hz == float(np.float32(chunk.sample_rate_hz))
    np.testing.assert_array_equal(back.samples, chunk.samples)


# --- score and plan records ---------------------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
safe_ints = st.integers(-(2**53), 2**53)
numbers = st.one_of(finite, safe_ints)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(
    json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4)),
    max_leaves=10,
)


@st.composite
def valid_scores(draw: st.DrawFn) -> ScoreRecord:
    state = draw(st.sampled_from(["ok", "unscorable"]))
    strip = tuple(draw(st.lists(numbers, max_size=50)))
    return ScoreRecord(
        bed_id=draw(bed_ids),
        window_end_s=draw(numbers),
        window_s=draw(numbers),
        state=state,
        risk=draw(st.floats(0, 1)) if state == "ok" else draw(st.one_of(st.none(), st.floats(0, 1))),
        reason=draw(st.one_of(st.none(), st.text(max_size=40))),
        quality=draw(st.one_of(st.none(), numbers)),
        heart_rate_bpm=draw(st.one_of(st.none(), numbers)),
        complete=draw(st.booleans()),
        models=tuple(draw(st.lists(st.text(max_size=20), max_size=4))),
        scored_at_s=draw(numbers),
        seq_last=draw(safe_ints),
        extra=draw(st.dictionaries(st.text(max_size=12), st.one_of(st.none(), st.text(max_size=12), numbers),
                                   max_size=6)),
        strip_hz=draw(st.floats(0, 500, exclude_min=True)) if strip else draw(st.one_of(
            st.none(), st.floats(0, 500, exclude_min=True))),
        strip_mv=strip,
    )


@FAST
@given(valid_scores())
def test_valid_scores_round_trip(score: ScoreRecord) -> None:
    assert decode_score(encode_score(score)) == score


def as_json_body(record: ScoreRecord | PlanRecord) -> dict[str, Any]:
    """A record's fields as the JSON object its encoder writes (tuples as lists, with the version)."""
    body: dict[str, Any] = {"v": 1}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        body[f.name] = list(value) if isinstance(value, tuple) else value
    return body


#: A JSON number where a value starts (after ": ", "[" or ", "), not a digit inside a string.
JSON_NUMBER = re.compile(r"(?:(?<=: )|(?<=\[)|(?<=, ))-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?=[,\]}])")


def tampered(record: ScoreRecord | PlanRecord, data: st.DataObject) -> bytes:
    """A valid record's JSON with a few fields replaced by any JSON value or dropped, a field added, or numbers
    no Python encoder writes (``1e999``, a 400-digit integer)."""
    body = as_json_body(record)
    for name in data.draw(st.lists(st.sampled_from([*body, "unknown"]), max_size=3)):
        if data.draw(st.booleans()):
            body.pop(name, None)
        else:
            body[name] = data.draw(json_values)
    text = json.dumps(body)
    number = data.draw(st.sampled_from(["", "1e999", "-1e999", "1" + "0" * 400]))
    spans = [m.span() for m in JSON_NUMBER.finditer(text)]
    if number and spans:
        lo, hi = spans[data.draw(st.integers(0, len(spans) - 1))]
        text = text[:lo] + number + text[hi:]
    return text.encode()


def record_is_valid_or_refused(decode: Any, encode: Any, data: bytes) -> None:
    """``decode(data)`` raises DecodeError, or gives a record that re-encodes and decodes to itself."""
    try:
        record = decode(data)
    except DecodeError:
        return
    assert decode(encode(record)) == record


@FAST
@given(valid_scores(), st.data())
def test_tampered_scores_decode_to_a_valid_record_or_refuse(score: ScoreRecord, data: st.DataObject) -> None:
    record_is_valid_or_refused(decode_score, encode_score, tampered(score, data))


@FAST
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_any_bytes_decode_to_a_valid_score_or_refuse(data: bytes) -> None:
    record_is_valid_or_refused(decode_score, encode_score, data)
    record_is_valid_or_refused(decode_plan, encode_plan, data)


ids = st.text(min_size=1, max_size=30)


@st.composite
def valid_plans(draw: st.DrawFn) -> PlanRecord:
    return PlanRecord(
        worker_id=draw(ids), plan_id=draw(st.integers(0, 2**63)), at_s=draw(numbers), reason=draw(st.text(max_size=80)),
        members=tuple(draw(st.lists(ids, min_size=1, max_size=6))), previous=tuple(draw(st.lists(ids, max_size=6))),
        budget_ms=draw(numbers), predicted_p50_ms=draw(numbers), predicted_p99_ms=draw(numbers),
        objective=draw(numbers), beds=draw(st.integers(0, 10**6)), hop_s=draw(numbers),
        windows_per_s=draw(numbers), measured_p99_ms=draw(st.one_of(st.none(), numbers)), slowdown=draw(numbers),
    )


@FAST
@given(valid_plans(), st.data())
def test_plans_round_trip_and_hostile_plans_are_refused(plan: PlanRecord, data: st.DataObject) -> None:
    assert decode_plan(encode_plan(plan)) == plan
    record_is_valid_or_refused(decode_plan, encode_plan, tampered(plan, data))
