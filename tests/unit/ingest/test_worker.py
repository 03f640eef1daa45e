"""Pure parts of the worker: chunk checks, dead letters, score records with their ECG strip."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from ensemble.scoring import Verdict
from ingest.errors import DecodeError
from ingest.schemas import WaveformChunk
from ingest.windowing import Window
from ingest.worker import (
    STRIP_HZ,
    STRIP_S,
    LoadTracker,
    check_chunk,
    deadletter_record,
    ecg_strip,
    verdict_to_record,
)


def window(samples: np.ndarray) -> Window:
    return Window("bed-001", ("MLII",), samples, 250.0, 2500, 1000.0, 10.0, 9, int(np.isnan(samples[0]).sum()))


def test_strip_is_the_last_seconds_of_lead_zero_decimated() -> None:
    samples = np.tile(np.arange(2500, dtype=np.float32), (2, 1))
    strip = ecg_strip(window(samples))
    assert len(strip) == int(STRIP_S * STRIP_HZ)
    assert strip[-1] == pytest.approx(np.arange(2495, 2500).mean())
    rec = verdict_to_record(window(samples), Verdict("ok", 0.3, None, 1.0, 60.0, ("rr-af@1",)))
    assert rec.strip_hz == 50.0 and rec.strip_mv == strip and rec.window_end_s == 1000.0


def test_no_strip_over_missing_samples() -> None:
    samples = np.zeros((1, 2500), dtype=np.float32)
    samples[0, -10:] = np.nan
    rec = verdict_to_record(window(samples), Verdict("unscorable", None, "gap", None, None, ()))
    assert rec.strip_mv == () and rec.strip_hz is None and not rec.complete


def test_wrong_rate_and_foreign_key_are_refused() -> None:
    chunk = WaveformChunk("bed-001", 0, 1.0, 360.0, ("I",), np.zeros((1, 360), np.int16), 200.0)
    with pytest.raises(DecodeError) as err:
        check_chunk(chunk, b"bed-001", 250.0)
    assert err.value.reason == "wrong-rate"
    ok = WaveformChunk("bed-001", 0, 1.0, 250.0, ("I",), np.zeros((1, 250), np.int16), 200.0)
    check_chunk(ok, b"bed-001", 250.0)
    with pytest.raises(DecodeError, match="key-mismatch"):
        check_chunk(ok, b"bed-002", 250.0)


def test_dead_letter_keeps_reason_origin_and_bytes() -> None:
    letter = json.loads(deadletter_record("truncated", "too short", "w", 3, 42, b"bed-9", b"\x00\x01"))
    assert (letter["reason"], letter["topic"], letter["partition"], letter["offset"]) == ("truncated", "w", 3, 42)
    assert base64.b64decode(letter["payload_b64"]) == b"\x00\x01" and not letter["payload_truncated"]


def test_load_tracker_counts_live_beds_and_how_aligned_they_are() -> None:
    tracker = LoadTracker(hop_s=5.0)
    now = 1000.0
    for tick in range(5):  # 50 beds, 10 falling due per 1-s tick: spread evenly
        for bed in range(10 * tick, 10 * tick + 10):
            tracker.window(f"bed-{bed}", end_s=now + tick, now_s=now + tick + 0.05)
    load = tracker.load(now + 5.0)
    assert (load.beds, load.phases) == (50, 5)
    for bed in range(50):  # the same 50 beds, all due in one tick
        tracker.window(f"bed-{bed}", end_s=now + 10, now_s=now + 10.05)
    tracker.window("bed-0", end_s=now + 11, now_s=now + 11.05)  # closes that tick
    assert tracker.load(now + 11.1).phases == 1
    assert tracker.load(now + 30.0).beds == 0  # nobody sent for two hops


def test_score_records_carry_the_plan_provenance() -> None:
    from ensemble.combine import Combiner
    from ensemble.scoring import ServingPlan

    class _M:
        name, version, model_id = "m", 1, "m@1"
        contract = None

        def predict(self, batch: object) -> np.ndarray:
            return np.zeros(0)

    class _N(_M):
        name, model_id = "n", "n@1"

    plan = ServingPlan((_M(), _N()), Combiner(("m@1", "n@1"), (1.0, 1.0)), plan_id=7, budget_ms=1000.0,
                       predicted_p99_ms=321.04)
    window = Window("bed-1", ("II", "V5"), np.zeros((2, 2500), dtype=np.float32), 250.0, 2500, 100.0, 10.0, 9, 0)
    verdict = Verdict("ok", 0.9, None, 1.0, 80.0, ("m@1",), ("n@1",))
    record = verdict_to_record(window, verdict, plan)
    assert record.models == ("m@1",)
    assert record.extra == {"plan_id": 7, "partial": 1, "skipped_models": "n@1", "budget_ms": 1000.0,
                            "predicted_ms": 321.0}
