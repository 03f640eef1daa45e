from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from models import ModelError
from models.data import cinc2017_labels, mitdb_record_names
from models.splits import MITDB_SPLITS, SPLITS, cinc_split, mitdb_split

AF_RECORDS = ("201", "202", "203", "210", "217", "219", "221", "222")


def test_every_mitdb_record_is_in_exactly_one_split(data_dir: Path) -> None:
    listed = [rec for split in SPLITS for rec in MITDB_SPLITS[split]]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(mitdb_record_names(data_dir))
    assert [len(MITDB_SPLITS[s]) for s in SPLITS] == [32, 8, 8]


def test_same_patient_records_share_a_split() -> None:
    assert mitdb_split("201") == mitdb_split("202")


def test_af_records_are_spread_over_all_splits() -> None:
    per_split = Counter(mitdb_split(rec) for rec in AF_RECORDS)
    assert set(per_split) == set(SPLITS)
    assert min(per_split.values()) >= 2


def test_unassigned_record_raises() -> None:
    with pytest.raises(ModelError):
        mitdb_split("999")


def test_cinc_split_is_pinned(data_dir: Path) -> None:
    names = sorted(cinc2017_labels(data_dir))
    counts = Counter(cinc_split(n) for n in names)
    assert counts == {"train": 2839, "val": 587, "test": 574}
    assert [cinc_split(n) for n in names[:6]] == ["train", "train", "train", "train", "train", "test"]


def test_cinc_split_has_af_everywhere(data_dir: Path) -> None:
    labels = cinc2017_labels(data_dir)
    af = Counter(cinc_split(n) for n, label in labels.items() if label == "A")
    assert all(af[s] >= 30 for s in SPLITS)
