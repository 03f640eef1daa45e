"""``holmes fuzz`` against the real broker: hostile input is dead-lettered with its reason, the worker lives on
and no window of the real beds is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from holmes.fuzz import KINDS, FuzzOptions, run_fuzz
from holmes.settings import Settings

pytestmark = pytest.mark.integration

HEADER_DEFECTS = {"bad-magic", "wrong-schema", "bad-seq", "bad-timestamp", "bad-gain", "bad-shape", "bad-lead-name",
                  "trailing-bytes"}
#: The dead-letter reasons each kind may get (seq-jump chunks are valid: none).
REASON_CLASSES: dict[str, set[str]] = {
    "malformed": HEADER_DEFECTS,
    "truncated": {"truncated"},
    "oversized": {"oversized"},
    "wrong-schema": {"wrong-schema"},
    "non-finite": {"non-finite"},
    "wrong-rate": {"wrong-rate", "bad-rate"},
    "key-mismatch": {"key-mismatch"},
    "bad-bed-id": {"bad-bed-id"},
    "garbage": {"bad-magic", "truncated"},
    "empty": {"truncated", "wrong-type"},
    "null-key": HEADER_DEFECTS | {"truncated", "non-finite", "wrong-rate", "bad-rate", "bad-bed-id", "null-key"},
    "seq-jump": set(),
    "forged-seq": {"implausible-seq", "future-timestamp"},
}


def test_the_worker_survives_hostile_input_and_loses_nothing(kafka_bootstrap: str, tmp_path: Path,
                                                            data_dir: Path) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, waveform_partitions=4, score_partitions=2, data_dir=data_dir)
    options = FuzzOptions(messages=500, beds=3, duration_s=30.0, speed=3.0, seed=7, run_dir=tmp_path,
                          progress=False, drain_s=20.0)
    result = run_fuzz(settings, options)

    assert result["worker_alive"] and result["api_alive"]
    assert result["send_failed"] == 0 and result["dead_letter_reader_error"] is None
    rows = result["by_kind"]
    assert set(rows) == set(KINDS) == set(REASON_CLASSES)
    # every bad message is in the dead-letter topic, with a reason of its class; nothing else is there
    assert result["missing"] == 0 and result["wrong_reason"] == 0
    assert result["unexpected_dead_letters"] == {}
    for kind, row in rows.items():
        assert set(row["reasons"]) <= REASON_CLASSES[kind], kind
        if REASON_CLASSES[kind]:
            assert row["dead_lettered"] == row["sent"], kind
        else:
            assert row["accepted_as_expected"] == row["sent"], kind
    assert result["dead_letters_received"] == result["to_dead_letter"]
    # the real beds lost no window: every one reached the WebSocket and the database
    assert result["windows_expected"] == 3 * 5
    assert result["windows_scored"] == result["windows_in_db"] == result["windows_expected"]
    assert result["windows_incomplete"] == 0  # no hostile chunk reached a real bed's buffer
    assert result["windows_lost"] == 0 and result["ok"]
