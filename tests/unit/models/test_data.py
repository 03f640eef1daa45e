from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from models import ModelError
from models.data import AF_RHYTHMS, cinc2017_labels, load_cinc2017, load_mitdb, mitdb_windows, resample

NAMES = ("A00002", "A00004", "A00006", "A00008")


def test_cinc_records_are_single_lead_250_hz_with_reference_labels(data_dir: Path) -> None:
    with (data_dir / "cinc2017" / "REFERENCE.csv").open() as handle:
        reference = {row[0]: row[1] for row in csv.reader(handle) if row[0] != "record"}
    records = list(load_cinc2017(data_dir, records=NAMES))
    assert [r.name for r in records] == list(NAMES)
    for rec in records:
        assert rec.label == reference[rec.name]
        assert rec.fs_hz == 250.0
        assert rec.signal_mv.dtype == np.float32
        assert rec.signal_mv.ndim == 2 and rec.signal_mv.shape[0] == 1
        header = (data_dir / "cinc2017" / f"{rec.name}.hea").read_text().split()
        assert rec.signal_mv.shape[1] == int(header[3]) * 5 // 6
        assert 0.1 < float(np.percentile(np.abs(rec.signal_mv), 99.9)) < 10.0
    assert [r.label for r in records] == ["N", "A", "N", "O"]


def test_cinc_labels_cover_all_four_classes(data_dir: Path) -> None:
    labels = cinc2017_labels(data_dir)
    assert len(labels) == 4000
    assert {label: list(labels.values()).count(label) for label in "NAO~"} == {"N": 2344, "A": 364, "O": 1147, "~": 145}


def test_unknown_cinc_record_raises(data_dir: Path) -> None:
    with pytest.raises(ModelError, match="not in REFERENCE.csv"):
        list(load_cinc2017(data_dir, records=["Z99999"]))


def test_mitdb_rhythm_episodes_are_read(data_dir: Path) -> None:
    rec = load_mitdb(data_dir, "201")
    assert rec.signal_mv.shape == (2, 451389)
    assert rec.rhythm_starts[0] == 0
    assert np.all(np.diff(rec.rhythm_starts) > 0)
    assert "(AFIB" in rec.rhythms and all(r.startswith("(") and "\x00" not in r for r in rec.rhythms)


def test_mitdb_201_has_af_windows_and_100_has_none(data_dir: Path) -> None:
    af_record = mitdb_windows(data_dir, "201", window_s=10.0, hop_s=10.0)
    normal = mitdb_windows(data_dir, "100", window_s=10.0, hop_s=10.0)
    for windows in (af_record, normal):
        assert len(windows) == 180
        assert all(w.signal_mv.shape == (2, 2500) and w.signal_mv.dtype == np.float32 for w in windows)
        assert all(w.fs_hz == 250.0 for w in windows)
    assert sum(w.af for w in af_record) >= 30
    assert not any(w.af or w.straddles_change for w in normal)
    assert {r for w in normal for r in w.rhythms} == {"(N"}


def test_straddling_windows_are_flagged(data_dir: Path) -> None:
    windows = mitdb_windows(data_dir, "201", window_s=10.0, hop_s=10.0)
    straddling = [w for w in windows if w.straddles_change]
    assert straddling
    assert all(len(w.rhythms) > 1 for w in straddling)
    assert all(len(w.rhythms) == 1 for w in windows if not w.straddles_change)
    for w in windows:
        if not w.straddles_change:
            assert w.af_fraction in (0.0, 1.0)
            assert w.af == (w.rhythms[0] in AF_RHYTHMS)


def test_hop_controls_the_number_of_windows(data_dir: Path) -> None:
    windows = mitdb_windows(data_dir, "100", window_s=10.0, hop_s=5.0)
    assert len(windows) == 360
    assert windows[1].start_s == 5.0
    np.testing.assert_array_equal(windows[1].signal_mv[:, :1250], windows[0].signal_mv[:, 1250:])


def test_missing_inputs_raise(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_mitdb(data_dir, "999")
    with pytest.raises(ModelError, match="mitdb not found"):
        mitdb_windows(tmp_path, "100", 10.0, 10.0)
    with pytest.raises(ModelError, match="positive"):
        mitdb_windows(data_dir, "100", 0.0, 10.0)


def test_resample_uses_the_rational_factor() -> None:
    x = np.sin(2 * np.pi * 5 * np.arange(3600) / 360.0)
    y = resample(x, 360.0, 250.0)
    assert y.dtype == np.float32 and y.shape == (2500,)
    np.testing.assert_allclose(y[100:-100], np.sin(2 * np.pi * 5 * np.arange(2500) / 250.0)[100:-100], atol=1e-3)
    assert resample(x, 250.0, 250.0).shape == x.shape
