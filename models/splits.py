"""Fixed, patient-wise train/validation/test splits.

CinC 2017 has one record per person, so a record's split is a stable function of its name:
the first 8 bytes of SHA-256 of the name, modulo 100, below 70 is train, below 85 validation,
the rest test. MIT-BIH is split by an explicit list: records 201 and 202 (one person) share a
split, and the eight AF/flutter records are spread over the three splits (train 201, 202, 210, 217;
validation 219, 222; test 203, 221), as are the paced records (102, 217 train; 104 validation;
107 test). 32 / 8 / 8 records.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from models.errors import ModelError

__all__ = ["MITDB_SPLITS", "SPLITS", "Split", "cinc_split", "mitdb_split"]

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")

MITDB_SPLITS: dict[Split, tuple[str, ...]] = {
    "train": (
        "101", "102", "103", "106", "108", "109", "111", "112", "114", "115", "117",
        "118", "121", "122", "123", "124", "201", "202", "205", "207", "209", "210",
        "212", "214", "215", "217", "220", "223", "230", "231", "233", "234",
    ),
    "val": ("104", "105", "116", "200", "213", "219", "222", "228"),
    "test": ("100", "107", "113", "119", "203", "208", "221", "232"),
}  # fmt: skip

_MITDB_INDEX: dict[str, Split] = {rec: split for split, recs in MITDB_SPLITS.items() for rec in recs}


def cinc_split(record: str) -> Split:
    """Split of a CinC 2017 record, from a stable hash of its name (70/15/15)."""
    bucket = int.from_bytes(hashlib.sha256(record.encode("utf-8")).digest()[:8], "big") % 100
    if bucket < 70:
        return "train"
    if bucket < 85:
        return "val"
    return "test"


def mitdb_split(record: str) -> Split:
    """Split of an MIT-BIH record from the fixed lists in :data:`MITDB_SPLITS`."""
    try:
        return _MITDB_INDEX[record]
    except KeyError:
        raise ModelError(f"MIT-BIH record {record!r} is not assigned to a split") from None
