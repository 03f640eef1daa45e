"""The waveform codec round-trips real samples and refuses every kind of bad message with a reason."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ingest.codec import (
    MAX_MESSAGE_BYTES,
    decode_chunk,
    decode_plan,
    decode_score,
    encode_chunk,
    encode_plan,
    encode_score,
)
from ingest.errors import DecodeError
from ingest.schemas import PlanRecord, ScoreRecord, WaveformChunk


def chunk(**over: object) -> WaveformChunk:
    base: dict[str, object] = {
        "bed_id": "bed-001", "seq": 7, "t0_s": 1_700_000_000.25, "sample_rate_hz": 250.0,
        "leads": ("MLII", "V1"), "samples": np.arange(500, dtype=np.int16).reshape(2, 250), "gain": 200.0,
    }
    base.update(over)
    return WaveformChunk(**base)  # type: ignore[arg-type]


def test_int16_round_trip_is_exact_and_compact() -> None:
    c = chunk()
    data = encode_chunk(c)
    assert len(data) < 2 * 250 * 2 + 64  # samples plus a small header, not JSON
    back = decode_chunk(data)
    assert back.bed_id == c.bed_id and back.seq == c.seq and back.t0_s == c.t0_s
    assert back.leads == c.leads and back.gain == c.gain
    np.testing.assert_array_equal(back.samples, c.samples)
    np.testing.assert_allclose(back.millivolts(), c.samples / 200.0, rtol=1e-6)
    assert back.t_last_s == pytest.approx(c.t0_s + 249 / 250)


def test_float32_round_trip() -> None:
    c = chunk(samples=np.linspace(-1, 1, 250, dtype=np.float32)[None, :], leads=("I",), gain=1.0)
    np.testing.assert_array_equal(decode_chunk(encode_chunk(c)).samples, c.samples)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d[:10], "truncated"),
        (lambda d: d[:-3], "truncated"),
        (lambda d: d + b"xx", "trailing-bytes"),
        (lambda d: b"XX" + d[2:], "bad-magic"),
        (lambda d: d[:2] + bytes([9]) + d[3:], "wrong-schema"),
        (lambda d: b"\x00" * (MAX_MESSAGE_BYTES + 1), "oversized"),
        (lambda d: b'{"bed_id": "bed-001", "samples": [1, 2, 3]}', "bad-magic"),
    ],
)
def test_defects_are_refused_with_a_reason(mutate: object, reason: str) -> None:
    data = encode_chunk(chunk())
    with pytest.raises(DecodeError) as err:
        decode_chunk(mutate(data))  # type: ignore[operator]
    assert err.value.reason == reason


def test_nan_samples_are_refused() -> None:
    data = bytearray(encode_chunk(chunk(samples=np.zeros((1, 250), np.float32), leads=("I",), gain=1.0)))
    data[-4:] = np.array([np.nan], dtype="<f4").tobytes()
    with pytest.raises(DecodeError, match="non-finite"):
        decode_chunk(bytes(data))


def test_out_of_range_rate_is_refused() -> None:
    data = bytearray(encode_chunk(chunk()))
    head = struct.Struct("<2sBBQdffBIB")
    fields = list(head.unpack_from(data))
    fields[5] = 5.0
    head.pack_into(data, 0, *fields)
    with pytest.raises(DecodeError) as err:
        decode_chunk(bytes(data))
    assert err.value.reason == "bad-rate"


@pytest.mark.parametrize("bed_id", ["", "bed 1", "x" * 65, "bed\n1", "../etc"])
def test_hostile_bed_ids_are_refused(bed_id: str) -> None:
    good = encode_chunk(chunk(bed_id="bed-001"))
    data = good[:33] + bytes([len(bed_id.encode())]) + bed_id.encode() + good[34 + 7 :]
    with pytest.raises(DecodeError) as err:
        decode_chunk(data)
    assert err.value.reason == "bad-bed-id"
    with pytest.raises(ValueError, match="refused by the decoder"):
        encode_chunk(chunk(bed_id=bed_id))


@pytest.mark.parametrize(
    "over",
    [{"sample_rate_hz": 5.0}, {"t0_s": float("nan")}, {"gain": 0.0}, {"seq": -1},
     {"leads": ("I",) * 13, "samples": np.zeros((13, 10), np.int16)}, {"leads": ("bad name\n", "V1")}],
)
def test_encoder_refuses_what_the_decoder_would(over: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="refused by the decoder"):
        encode_chunk(chunk(**over))


def test_header_claiming_more_samples_than_sent_is_truncated() -> None:
    data = bytearray(encode_chunk(chunk()))
    head = struct.Struct("<2sBBQdffBIB")
    fields = list(head.unpack_from(data))
    fields[8] = 2000  # n_samples
    head.pack_into(data, 0, *fields)
    with pytest.raises(DecodeError) as err:
        decode_chunk(bytes(data))
    assert err.value.reason == "truncated"


def test_score_round_trip_and_refusals() -> None:
    rec = ScoreRecord(bed_id="bed-002", window_end_s=1.5, window_s=10.0, state="ok", risk=0.25,
                      models=("rr-af@1",), quality=0.9)
    assert decode_score(encode_score(rec)) == rec
    with pytest.raises(DecodeError):
        decode_score(b"not json")
    with pytest.raises(DecodeError):
        decode_score(b'{"v": 2}')
    with pytest.raises(DecodeError):
        decode_score(b'{"v": 1, "bed_id": "b", "surprise": 1}')


@pytest.mark.parametrize(
    "payload",
    [None, b"[" * 100_000, b'{"v": 1, "bed_id": "b", "window_end_s": NaN, "window_s": 10, "state": "ok"}',
     b'{"v": 1, "bed_id": "b", "window_end_s": "soon", "window_s": 10, "state": "ok", "risk": 0.1}',
     b'{"v": 1, "bed_id": "b", "window_end_s": 1, "window_s": 10, "state": "maybe"}',
     b'{"v": 1, "bed_id": "bad id", "window_end_s": 1, "window_s": 10, "state": "unscorable"}',
     b'{"v": 1, "bed_id": "b", "window_end_s": 1, "window_s": 10, "state": "ok", "risk": 1.5}',
     b'{"v": 1, "bed_id": "b", "window_end_s": 1, "window_s": 10, "state": "ok", "risk": 0.5, "models": "abc"}'],
)
def test_score_decoder_raises_only_decode_errors(payload: bytes | None) -> None:
    with pytest.raises(DecodeError):
        decode_score(payload)


def test_score_with_ecg_strip_round_trips_and_bad_strips_are_refused() -> None:
    rec = ScoreRecord(bed_id="bed-002", window_end_s=1.5, window_s=10.0, state="ok", risk=0.25,
                      strip_hz=50.0, strip_mv=(0.1, -0.2, 1.05))
    assert decode_score(encode_score(rec)) == rec
    with pytest.raises(DecodeError):
        decode_score(b'{"v": 1, "bed_id": "b", "window_end_s": 1, "window_s": 10, "state": "unscorable", '
                     b'"strip_mv": [0.1, 0.2]}')  # no rate
    with pytest.raises(DecodeError):
        decode_score(b'{"v": 1, "bed_id": "b", "window_end_s": 1, "window_s": 10, "state": "unscorable", '
                     b'"strip_hz": 50, "strip_mv": "0.1,0.2"}')


def _plan(**over: object) -> PlanRecord:
    fields: dict[str, object] = {
        "worker_id": "host:1", "plan_id": 3, "at_s": 1.7e9, "reason": "load: beds 64 -> 128",
        "members": ("a@1", "b@2"), "previous": ("a@1",), "budget_ms": 1000.0, "predicted_p50_ms": 120.0,
        "predicted_p99_ms": 310.5, "objective": 0.981, "beds": 128, "hop_s": 5.0, "windows_per_s": 25.6,
    }
    fields.update(over)
    return PlanRecord(**fields)  # type: ignore[arg-type]


def test_plan_round_trip() -> None:
    plan = _plan(measured_p99_ms=290.0, slowdown=1.5)
    assert decode_plan(encode_plan(plan)) == plan


@pytest.mark.parametrize(
    "payload",
    [
        b"", b"[]", b'{"v": 2}', b"\xff\xfe", b"NaN",
        encode_plan(_plan()).replace(b'"beds":128', b'"beds":-1'),
        encode_plan(_plan()).replace(b'"members":["a@1","b@2"]', b'"members":[]'),
        encode_plan(_plan()).replace(b'"objective":0.981', b'"objective":Infinity'),
        encode_plan(_plan()).replace(b'"reason"', b'"why"'),
        b"{" * 100_000,
    ],
)
def test_plan_decoder_raises_only_decode_errors(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_plan(payload)
