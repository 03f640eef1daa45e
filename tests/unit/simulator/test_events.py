"""Event specs parse or fail with a message that says what is wrong; wire and signal effects act where asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.signal import welch

from simulator.events import (
    NOISE_RMS_MV,
    Event,
    EventSource,
    WireEffects,
    emg_noise,
    parse_event,
    parse_events,
    typical_ptp,
)
from simulator.sources import AfLibrary, SyntheticSource

FS = 250


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("lead-off@bed-003:20+10", Event("lead-off", "bed-003", 20.0, 10.0)),
        ("noise@bed-010:1.5+0.5s", Event("noise", "bed-010", 1.5, 0.5)),
        ("drop@bed-001:5", Event("drop", "bed-001", 5.0, 0.0)),
        ("duplicate@bed-001:0+3", Event("duplicate", "bed-001", 0.0, 3.0)),
        ("reorder@icu.bed:7:12", Event("reorder", "icu.bed:7", 12.0, 0.0)),
        (" AF@bed-002:30+60 ", Event("af", "bed-002", 30.0, 60.0)),
    ],
)
def test_good_specs_parse(spec: str, expected: Event) -> None:
    event = parse_event(spec)
    assert event == expected
    assert parse_event(event.spec()) == event


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty event spec"),
        ("lead-off", "has no '@'"),
        ("blink@bed-001:1+1", "unknown event kind 'blink'"),
        ("lead-off@bed-001", "has no ':START'"),
        ("lead-off@:1+1", "not a valid bed id"),
        ("lead-off@bed 1:1+1", "not a valid bed id"),
        ("lead-off@bed-001:soon+1", "start 'soon' .* is not a number of seconds"),
        ("lead-off@bed-001:-1+1", "start '-1' .* is not a number of seconds"),
        ("lead-off@bed-001:nan+1", "is not a number of seconds"),
        ("lead-off@bed-001:1+abc", "duration 'abc' .* is not a number of seconds"),
        ("lead-off@bed-001:1", "needs a duration > 0 s"),
        ("noise@bed-001:1+0", "needs a duration > 0 s"),
        ("af@bed-001:1", "needs a duration > 0 s"),
    ],
)
def test_bad_specs_raise_value_error_saying_why(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_event(spec)


def test_parse_events_reads_several() -> None:
    assert [e.kind for e in parse_events(["drop@bed-001:1", "noise@bed-002:2+1"])] == ["drop", "noise"]


def test_event_spans_in_samples() -> None:
    assert Event("noise", "bed-001", 2.0, 1.0).span(FS) == (500, 750)
    assert Event("drop", "bed-001", 2.0).span(FS) == (500, 501)


def _route_all(effects: WireEffects, n_chunks: int, size: int = FS) -> list[int]:
    out: list[int] = []
    for k in range(n_chunks):
        out += [int.from_bytes(p, "big") for p in effects.route(k * size, (k + 1) * size, k.to_bytes(2, "big"))]
    return out + [int.from_bytes(p, "big") for p in effects.flush()]


def test_wire_drop_duplicate_and_reorder_act_on_the_chunks_they_overlap() -> None:
    effects = WireEffects(
        [Event("drop", "b", 1.0, 1.5), Event("duplicate", "b", 4.2), Event("reorder", "b", 6.0, 3.0)], FS
    )
    assert _route_all(effects, 11) == [0, 3, 4, 4, 5, 7, 6, 9, 8, 10]
    assert (effects.dropped, effects.duplicated, effects.reordered) == (2, 1, 2)


def test_reorder_cut_by_the_end_is_flushed() -> None:
    effects = WireEffects([Event("reorder", "b", 2.0)], FS)
    assert _route_all(effects, 3) == [0, 1, 2]


def test_emg_noise_is_large_and_high_frequency() -> None:
    noise = emg_noise(20 * FS, 2, FS, np.random.default_rng(0))
    assert noise.shape == (2, 20 * FS)
    assert np.sqrt(np.mean(noise**2, axis=1)) == pytest.approx([NOISE_RMS_MV] * 2, rel=1e-6)
    f, p = welch(noise[0], fs=FS, nperseg=512)
    assert p[f >= 20].sum() > 0.9 * p.sum()


def test_signal_events_change_only_their_interval() -> None:
    events = [Event("lead-off", "bed-001", 2.0, 1.0), Event("noise", "bed-001", 5.0, 2.0)]
    plain = SyntheticSource(3).read(10 * FS).astype(np.int32)
    src = EventSource(SyntheticSource(3), events, seed=1)
    got = np.concatenate([src.read(n) for n in [62, 63] * 20], axis=1)[:, : 10 * FS].astype(np.int32)
    changed = np.flatnonzero((got != plain).any(axis=0))
    assert changed.min() == 2 * FS and changed.max() == 7 * FS - 1
    assert (got[:, 2 * FS : 3 * FS] == 0).all(), "lead-off is a flat line at 0"
    assert np.array_equal(got[:, 3 * FS : 5 * FS], plain[:, 3 * FS : 5 * FS])
    assert np.std(got[:, 5 * FS : 7 * FS] - plain[:, 5 * FS : 7 * FS]) > 0.5 * src.gain


def test_af_splice_is_real_af_matched_to_the_bed(data_dir: Path) -> None:
    lib = AfLibrary(data_dir / "mitdb", FS)
    assert {r[0] for r in lib.runs()} >= {"201", "203"}
    src = EventSource(SyntheticSource(4), [Event("af", "bed-001", 4.0, 20.0)], seed=2, af_library=lib)
    plain = SyntheticSource(4).read(30 * FS).astype(np.float64)
    got = src.read(30 * FS).astype(np.float64)
    assert np.array_equal(got[:, : 4 * FS], plain[:, : 4 * FS])
    assert np.array_equal(got[:, 24 * FS :], plain[:, 24 * FS :])
    inside = got[:, 5 * FS : 23 * FS]
    assert not np.allclose(inside, plain[:, 5 * FS : 23 * FS])
    for lead in range(2):
        ratio = typical_ptp(inside[lead], FS) / typical_ptp(plain[lead, 5 * FS : 23 * FS], FS)
        assert 0.6 < ratio < 1.6, f"lead {lead} amplitude ratio {ratio:.2f}"
    assert "mitdb/" in src.describe()
