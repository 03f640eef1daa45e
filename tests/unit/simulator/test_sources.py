"""Bed sources replay real records at 250 Hz without gaps, keep beat timing, and differ from bed to bed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.signal import find_peaks

from simulator.errors import ConfigError, DataNotFoundError
from simulator.sources import (
    CincSource,
    MitdbRecord,
    MitdbSource,
    SyntheticSource,
    cinc_library,
    make_sources,
    mitdb_record,
    to_adc,
)

FS = 250


def test_mitdb_sources_are_int16_blocks_at_250_hz_with_the_record_leads(data_dir: Path) -> None:
    sources = make_sources("mitdb", 3, data_dir, seed=1)
    for src in sources:
        assert isinstance(src, MitdbSource)
        header = wfdb.rdheader(str(data_dir / "mitdb" / src.record.name))
        assert src.leads == tuple(header.sig_name)
        assert src.sample_rate_hz == FS and src.gain == 200.0
        first, second = src.read(FS), src.read(3 * FS + 7)
        assert first.shape == (2, FS) and second.shape == (2, 3 * FS + 7)
        assert first.dtype == np.int16 and second.dtype == np.int16
        assert np.ptp(first) > 50, "a second of ECG at 200 units/mV moves more than 0.25 mV"


def test_loop_period_matches_the_resampled_record_length(data_dir: Path) -> None:
    rec = mitdb_record(data_dir / "mitdb" / "100")
    n_in = wfdb.rdheader(str(data_dir / "mitdb" / "100")).sig_len
    assert n_in * 25 / 36 - 100 <= rec.period <= n_in * 25 / 36


def test_resampling_keeps_r_peak_timing(data_dir: Path) -> None:
    path = data_dir / "mitdb" / "100"
    ann = wfdb.rdann(str(path), "atr", sampto=360 * 60)
    raw = wfdb.rdrecord(str(path), sampto=360 * 61, channels=[0]).p_signal[:, 0]
    out = MitdbSource(mitdb_record(path), 0).read(FS * 60)[0].astype(np.float64)
    errors_s = []
    for s, sym in zip(ann.sample, ann.symbol, strict=True):
        if sym != "N" or s < 360:  # the loop's cross-fade shapes the first 0.2 s
            continue
        near = slice(s - 18, s + 18)  # +-50 ms
        t_raw = (s - 18 + int(np.argmax(raw[near]))) / 360
        e = round(s * FS / 360)
        if e + 13 > out.size:
            continue
        t_out = (e - 12 + int(np.argmax(out[e - 12 : e + 13]))) / FS
        errors_s.append(t_out - t_raw)
    errors = np.abs(np.array(errors_s))
    assert len(errors) > 60
    assert errors.max() <= 1 / FS + 1e-9, "an R peak moved by more than one 250-Hz sample"
    assert errors.mean() < 0.002


def test_blocks_join_like_a_single_resampling(data_dir: Path) -> None:
    rec = mitdb_record(data_dir / "mitdb" / "201")
    b = rec.block_len
    across = rec.segment(b - 300, b + 300).astype(np.int32)
    whole = to_adc(rec.resampled_mv(0, b + 400)[:, b - 300 : b + 300], rec.gain).astype(np.int32)
    assert np.abs(across - whole).max() <= 1


def test_record_loops_seamlessly_to_its_start(data_dir: Path) -> None:
    rec = mitdb_record(data_dir / "mitdb" / "100")
    src = MitdbSource(rec, rec.period - FS)
    x = src.read(3 * FS)
    assert x.shape == (2, 3 * FS)
    assert np.array_equal(x[:, FS:], rec.block(0)[:, : 2 * FS]), "after the end it plays the start again"
    steps = np.abs(np.diff(x.astype(np.int32), axis=1))
    typical = np.abs(np.diff(rec.block(0)[:, : 30 * FS].astype(np.int32), axis=1)).max()
    assert steps[:, FS - 60 : FS + 60].max() <= typical, "no step at the wrap-around"


def test_beds_get_different_records_then_different_offsets(data_dir: Path) -> None:
    sources = make_sources("mitdb", 60, data_dir, seed=3)
    records = [s.record.name for s in sources]  # type: ignore[attr-defined]
    assert len(set(records[:48])) == 48
    for i in range(48, 60):
        twin = records.index(records[i])
        assert abs(sources[i].offset - sources[twin].offset) > 60 * FS  # type: ignore[attr-defined]
    blocks = [s.read(2 * FS) for s in sources[:6]] + [s.read(2 * FS) for s in sources[48:54]]
    for i in range(len(blocks)):
        for j in range(i + 1, len(blocks)):
            assert not np.array_equal(blocks[i], blocks[j])


def test_sources_are_deterministic_for_a_seed(data_dir: Path) -> None:
    a = [s.describe() for s in make_sources("mitdb", 5, data_dir, seed=7)]
    b = [s.describe() for s in make_sources("mitdb", 5, data_dir, seed=7)]
    c = [s.describe() for s in make_sources("mitdb", 5, data_dir, seed=8)]
    assert a == b and a != c


def test_cinc_bed_plays_lead_i_and_moves_on_to_the_next_records(data_dir: Path) -> None:
    lib = cinc_library(data_dir / "cinc2017")
    src = CincSource(lib, first=10, offset_fraction=0.5)
    assert src.leads == ("I",) and src.sample_rate_hz == FS
    first, second = lib.signal(10), lib.signal(11)
    start = int(0.5 * first.shape[1])
    n = first.shape[1] - start + second.shape[1] + 5 * FS
    x = src.read(n)
    assert x.shape == (1, n) and x.dtype == np.int16
    assert np.array_equal(x[:, : first.shape[1] - start], first[:, start:])
    assert np.array_equal(x[:, first.shape[1] - start : n - 5 * FS], second)
    assert np.array_equal(x[:, n - 5 * FS :], lib.signal(12)[:, : 5 * FS])


def test_cinc_sources_never_run_dry(data_dir: Path) -> None:
    sources = make_sources("cinc2017", 4, data_dir, seed=0)
    names = {s.describe().split("+")[0] for s in sources}
    assert len(names) == 4
    for src in sources:
        for _ in range(5):
            assert src.read(60 * FS).shape == (1, 60 * FS)  # 5 min, longer than any record (<= 61 s)


def test_cinc_resamples_300_to_250_hz(data_dir: Path) -> None:
    lib = cinc_library(data_dir / "cinc2017")
    n300 = wfdb.rdheader(str(data_dir / "cinc2017" / lib.names[0])).sig_len
    assert lib.signal(0).shape == (1, math.ceil(n300 * 5 / 6))


def test_synthetic_is_deterministic_whatever_the_read_sizes() -> None:
    a = SyntheticSource(5)
    b = SyntheticSource(5)
    whole = a.read(40 * FS)
    parts = np.concatenate([b.read(62 + (k % 2)) for k in range(40 * 4)], axis=1)
    assert np.array_equal(whole, parts)
    assert not np.array_equal(whole, SyntheticSource(6).read(40 * FS))


@pytest.mark.parametrize("irregular", [False, True])
def test_synthetic_rhythm_has_the_heart_rate_and_regularity_asked_for(irregular: bool) -> None:
    src = SyntheticSource(11, irregular=irregular, heart_rate_bpm=75.0)
    x = src.read(120 * FS)[0].astype(np.float64) / src.gain
    peaks, _ = find_peaks(x, height=0.6, distance=int(0.25 * FS))
    rr = np.diff(peaks) / FS
    assert 60 / rr.mean() == pytest.approx(75.0, rel=0.1)
    cv = rr.std() / rr.mean()
    assert (cv > 0.15) if irregular else (cv < 0.08)


def test_synthetic_beds_differ_and_need_no_data() -> None:
    sources = make_sources("synthetic", 4, None, seed=0, synthetic_af_fraction=0.5)
    blocks = [s.read(5 * FS) for s in sources]
    assert all(b.shape == (2, 5 * FS) for b in blocks)
    assert len({b.tobytes() for b in blocks}) == 4


@pytest.mark.parametrize("folder", [None, Path("/nonexistent/holmes-data")])
def test_missing_data_folder_names_the_setting(folder: Path | None) -> None:
    with pytest.raises(DataNotFoundError, match="HOLMES_DATA_DIR"):
        make_sources("mitdb", 2, folder, seed=0)


def test_empty_mitdb_folder_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "mitdb").mkdir()
    with pytest.raises(DataNotFoundError, match="HOLMES_DATA_DIR"):
        make_sources("mitdb", 2, tmp_path, seed=0)


def test_unknown_source_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown source"):
        make_sources("holter", 1, tmp_path, seed=0)  # type: ignore[arg-type]


def test_record_read_once_gives_the_millivolts_of_a_span_read(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = MitdbRecord(data_dir / "mitdb" / "208")
    for lo, hi in [(0, 5000), (123_457, 130_001), (649_000, 650_000)]:
        span = wfdb.rdrecord(str(data_dir / "mitdb" / "208"), sampfrom=lo, sampto=hi, physical=True)
        assert np.array_equal(rec._millivolts(lo, hi), np.nan_to_num(span.p_signal)), (lo, hi)
    reads: list[object] = []
    real = wfdb.rdrecord
    monkeypatch.setattr(wfdb, "rdrecord", lambda *a, **k: reads.append(a) or real(*a, **k))
    for b in range(3):
        rec.block(b)
    assert reads == [], "blocks come from the record read once, not from the files again"


@pytest.mark.parametrize("kind", ["mitdb", "cinc2017"])
def test_a_warmed_source_reads_what_a_cold_one_does(data_dir: Path, kind: str) -> None:
    cold, warm = make_sources(kind, 3, data_dir, seed=4), make_sources(kind, 3, data_dir, seed=4)
    for a, b in zip(cold, warm, strict=True):
        b.warm(150.0)
        for n in (FS, 7 * FS + 3, 60 * FS, 90 * FS, 2):  # across blocks and records, past what was warmed
            assert np.array_equal(a.read(n), b.read(n))


def test_a_warmed_mitdb_source_resamples_nothing_while_it_streams(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = MitdbRecord(data_dir / "mitdb" / "201")
    src = MitdbSource(record, offset=50 * FS)  # 10 s before its first block ends
    src.warm(130.0)
    calls: list[tuple[int, int]] = []
    resampled_mv = record.resampled_mv
    monkeypatch.setattr(record, "resampled_mv", lambda a, b: calls.append((a, b)) or resampled_mv(a, b))
    for _ in range(130):  # 130 one-second chunks: three blocks
        src.read(FS)
    assert calls == []
    src.read(60 * FS)  # beyond: loaded as it comes
    assert calls
