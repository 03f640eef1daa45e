"""Pure parts of the worker: chunk checks, dead letters, score records with their ECG strip, the commit ledger."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from ensemble.scoring import Verdict
from ingest.errors import DecodeError
from ingest.schemas import WaveformChunk
from ingest.windowing import Window, Windower
from ingest.worker import (
    STRIP_HZ,
    STRIP_S,
    CommitLedger,
    LoadTracker,
    LogThrottle,
    SendHold,
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


def test_chunks_without_a_key_or_from_the_future_are_refused() -> None:
    ok = WaveformChunk("bed-001", 0, 1000.0, 250.0, ("I",), np.zeros((1, 250), np.int16), 200.0)
    with pytest.raises(DecodeError) as err:
        check_chunk(ok, None, 250.0)
    assert err.value.reason == "null-key"
    check_chunk(ok, b"bed-001", 250.0, now_s=800.0, max_future_s=300.0)
    with pytest.raises(DecodeError) as err:
        check_chunk(ok, b"bed-001", 250.0, now_s=600.0, max_future_s=300.0)
    assert err.value.reason == "future-timestamp"


def test_log_throttle_lets_a_few_through_then_counts_the_rest() -> None:
    throttle = LogThrottle(per_interval=3, interval_s=60.0)
    allowed = [throttle.allow("truncated", 10.0 + i) for i in range(10)] + [throttle.allow("bad-magic", 15.0)]
    assert allowed == [True] * 3 + [False] * 7 + [True]
    assert throttle.flush(30.0) == {}  # the minute is not over
    assert throttle.flush(75.0) == {"truncated": 7}  # bad-magic had nothing suppressed
    assert throttle.allow("truncated", 76.0)  # a new minute


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


def test_load_tracker_measures_the_spread_and_the_send_slots_of_interleaved_ticks() -> None:
    """1,000 beds, windows due over 5 ticks, their clocks spread over each tick, forwarded in 100-ms send
    slots: the chunks of a tick arrive in 10 bunches over the tick, and a bed late in one tick shares its
    slot with beds early in the next (the ticks interleave). Known from the chunks before any window."""
    import math

    tracker = LoadTracker(hop_s=5.0)
    arrivals = []
    for tick in range(10):
        for bed in range(1000):
            phase = (bed * 0.6180339887) % 1.0
            end = 1000.0 + tick + phase
            arrivals.append((1000.0 + tick + math.ceil((phase + 0.03) * 10) / 10 + 0.00005 * (bed % 100), bed, end))
    for at, bed, end in sorted(arrivals):
        tracker.chunk(f"bed-{bed}", at, end)
    load = tracker.load(1010.5)
    assert load.beds == 1000
    assert load.spread_s == pytest.approx(1.0, abs=0.05)
    assert load.bunch_s == pytest.approx(0.1, abs=0.01)
    for at, bed, end in sorted(arrivals):
        tracker.chunk(f"bed-{bed}", at + 10, end + 10)
        if (round(end) - bed) % 5 == 0:  # bed i's windows fall due every 5 ticks, at tick i mod 5
            tracker.window(f"bed-{bed}", end + 10, at + 10)
    load = tracker.load(1020.5)
    assert (load.beds, load.phases) == (1000, 5)
    assert load.spread_s == pytest.approx(1.0, abs=0.05) and load.bunch_s == pytest.approx(0.1, abs=0.01)


def test_beds_count_from_their_first_chunk_before_any_window() -> None:
    tracker = LoadTracker(hop_s=5.0)
    for bed in range(300):
        tracker.chunk(f"bed-{bed}", now_s=1000.0 + bed / 300)
    load = tracker.load(1001.0)
    assert load.beds == 300 and load.phases == 5  # no window yet: assumed spread over the hop


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


# -- delivery semantics: the commit ledger ------------------------------------------------------------------

FS = 250.0


def _chunk(bed: str, seq: int, t_start: float = 1000.0) -> WaveformChunk:
    return WaveformChunk(bed, seq, t_start + seq, FS, ("I",), np.zeros((1, 250), np.int16), 200.0)


def _feed(ledger: CommitLedger, windower: Windower, partition: int, offset: int, chunk: WaveformChunk,
          now_s: float = 0.0) -> list[tuple[object, float]]:
    """What the worker's agent does with one message; returns (hold, window end) of the windows cut."""
    assert ledger.accept(partition, offset)
    outcome, windows = windower.push(chunk)
    if outcome.value == "duplicate":
        ledger.other(partition, offset)
        return []
    hold = ledger.chunk(partition, offset, chunk.bed_id, chunk.t0_s + chunk.n_samples / FS, chunk.duration_s, now_s)
    out = []
    for w in windows:
        ledger.cut(hold, w.end_s)
        out.append((hold, w.end_s))
    return out


def test_ledger_commits_only_what_no_window_needs_and_only_once_published() -> None:
    windower = Windower(10.0, 5.0, FS)
    ledger = CommitLedger(10.0, 5.0, FS, margin_chunks=3)
    ledger.assign([0], generation=1)
    cut = []
    for seq in range(10):
        cut += _feed(ledger, windower, 0, seq, _chunk("bed-1", seq))
    assert len(cut) == 1 and ledger.committable(1.0) == {}  # the first window is cut but not on the broker
    ledger.published(*cut[0])
    # the next window needs seconds 5..15; three chunks of margin before that: chunks 0 and 1 are free
    assert ledger.committable(1.0) == {0: 2}
    ledger.committed({0: 2})
    assert ledger.committable(1.0) == {}


def test_a_replay_from_the_committed_offset_rebuilds_every_unpublished_window() -> None:
    """Crash at every point of a stream of three interleaved beds with a reorder and a duplicate: the windows
    published before the crash plus those a fresh worker cuts from the committed offset are all the windows."""
    messages = []  # (offset, chunk) on one partition
    for seq in range(40):
        for bed in ("bed-1", "bed-2", "bed-3"):
            messages.append(_chunk(bed, seq, t_start=1000.0 + 0.3 * int(bed[-1])))
    # bed-2's chunks 20 and 21 swapped on the wire (20 s starts a window), bed-3's chunk 25 sent twice
    i20 = next(i for i, c in enumerate(messages) if (c.bed_id, c.seq) == ("bed-2", 20))
    i21 = next(i for i, c in enumerate(messages) if (c.bed_id, c.seq) == ("bed-2", 21))
    messages[i20], messages[i21] = messages[i21], messages[i20]
    messages.insert(next(i for i, c in enumerate(messages) if (c.bed_id, c.seq) == ("bed-3", 27)),
                    _chunk("bed-3", 25, 1000.9))

    def all_windows(from_offset: int) -> set[tuple[str, float]]:
        w = Windower(10.0, 5.0, FS)
        return {(win.bed_id, win.end_s) for c in messages[from_offset:] for win in w.push(c)[1]}

    expected = all_windows(0)
    for crash_at in range(len(messages)):
        windower = Windower(10.0, 5.0, FS)
        ledger = CommitLedger(10.0, 5.0, FS, margin_chunks=3)
        ledger.assign([0], generation=1)
        published: set[tuple[str, float]] = set()
        in_flight: list[tuple[object, float, str]] = []
        committed = 0
        for offset, chunk in enumerate(messages[:crash_at]):
            in_flight += [(h, end, chunk.bed_id) for h, end in _feed(ledger, windower, 0, offset, chunk)]
            if offset % 4 == 3:  # scores reach the broker in bursts, a few messages late
                for hold, end, bed in in_flight:
                    ledger.published(hold, end)  # type: ignore[arg-type]
                    published.add((bed, end))
                in_flight = []
            committed = ledger.committable(0.0).get(0, committed)
            ledger.committed({0: committed})
        assert published | all_windows(committed) >= expected, f"windows lost after a crash at {crash_at}"


def test_dead_letters_hold_their_offset_until_sent_and_duplicates_hold_nothing() -> None:
    ledger = CommitLedger(10.0, 5.0, FS)
    ledger.assign([0], generation=1)
    assert ledger.accept(0, 0)
    letter = SendHold()
    ledger.other(0, 0, letter)
    assert ledger.accept(0, 1)
    ledger.other(0, 1)
    assert ledger.committable(0.0) == {}
    letter.done = True
    assert ledger.committable(0.0) == {0: 2}


def test_a_silent_bed_stops_holding_its_partition_back() -> None:
    windower = Windower(10.0, 5.0, FS)
    ledger = CommitLedger(10.0, 5.0, FS, idle_release_s=60.0)
    ledger.assign([0], generation=1)
    for seq in range(4):  # four seconds, no window yet: everything is needed
        _feed(ledger, windower, 0, seq, _chunk("bed-1", seq), now_s=100.0)
    assert ledger.committable(120.0) == {}
    assert ledger.committable(161.0) == {0: 4}


def test_silent_beds_are_forgotten_once_nothing_of_theirs_is_in_flight() -> None:
    windower = Windower(10.0, 5.0, FS)
    ledger = CommitLedger(10.0, 5.0, FS, on_drop=windower.drop)
    ledger.assign([0], generation=1)
    for seq in range(11):
        _feed(ledger, windower, 0, 2 * seq, _chunk("bed-1", seq), now_s=100.0)
        for hold, end_s in _feed(ledger, windower, 0, 2 * seq + 1, _chunk("bed-2", seq), now_s=100.0 + seq):
            ledger.published(hold, end_s)  # bed-2's scores are on the broker
    assert ledger.evict_idle(1000.0, 900.0) == []  # bed-2 was seen at 110 s; bed-1's window is still in flight
    assert ledger.evict_idle(1020.0, 900.0) == ["bed-2"]
    hold = ledger.beds["bed-1"]
    for end_s in list(hold.pending):
        ledger.published(hold, end_s)
    assert ledger.evict_idle(1020.0, 900.0) == ["bed-1"]
    assert windower.beds == {} and windower.dropped == 2 and ledger.beds == {}
    assert ledger.committable(1020.0) == {0: 22}  # nothing held back by the forgotten beds


def test_rebalance_keeps_partitions_held_through_consecutive_generations_only() -> None:
    dropped: list[str] = []
    windower = Windower(10.0, 5.0, FS)
    ledger = CommitLedger(10.0, 5.0, FS, on_drop=dropped.append)
    ledger.assign([0, 1], generation=3)
    for seq in range(3):
        _feed(ledger, windower, 0, seq, _chunk("bed-a", seq))
        _feed(ledger, windower, 1, seq, _chunk("bed-b", seq))
    assert ledger.assign([0], generation=4) == ["bed-b"]  # partition 1 went to another member
    assert not ledger.accept(0, 2) and ledger.accept(0, 3)  # re-read from the commit: skipped up to where we were
    assert not ledger.accept(1, 3)  # not ours any more
    assert ledger.assign([0, 1], generation=6) == ["bed-a"]  # a generation was missed: start again
    assert dropped == ["bed-b", "bed-a"]


def test_offsets_below_our_own_commit_mean_the_log_was_reset() -> None:
    dropped: list[str] = []
    windower = Windower(10.0, 5.0, FS)
    ledger = CommitLedger(10.0, 5.0, FS, on_drop=dropped.append)
    ledger.assign([0], generation=1)
    for seq in range(30):
        _feed(ledger, windower, 0, seq, _chunk("bed-a", seq), now_s=0.0)
    ledger.committed({0: 5})
    assert ledger.accept(0, 0) and dropped == ["bed-a"] and ledger.resets == 1


def test_a_full_scoring_queue_sheds_windows_as_explicit_unscorable_scores(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    """The real agent (Faust's test context, the producer replaced): the executor is not running, so its bounded
    queue fills and every further window is published as unscorable with the reason, none silently dropped."""
    import asyncio
    import types

    import faust

    from ingest.codec import decode_score, encode_chunk
    from ingest.topics import Topics
    from ingest.worker import WorkerConfig, build_app

    sent: list[tuple[str, bytes, bytes]] = []

    async def send(self: faust.Topic, *, key: bytes, value: bytes, **kwargs: object) -> asyncio.Future[None]:
        sent.append((self.get_topic_name(), key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    monkeypatch.setattr(faust.Topic, "send", send)
    config = WorkerConfig("127.0.0.1:1", Topics.named("shed"), max_queue=2, datadir=tmp_path)
    app = build_app(config, types.SimpleNamespace(plan=None))  # type: ignore[arg-type]

    async def stream() -> None:
        async with app.agents["holmes-windowing"].test_context() as agent:
            for seq in range(40):
                for bed in ("bed-1", "bed-2"):
                    await agent.put(value=encode_chunk(_chunk(bed, seq)), key=bed.encode())

    asyncio.run(stream())
    counters, ledger = app.holmes_counters, app.holmes_ledger  # type: ignore[attr-defined]
    scores = [decode_score(v) for topic, _, v in sent if topic == "shed.scores"]
    assert counters.windows == 14 and app.holmes_executor.depth == 2  # type: ignore[attr-defined]
    assert counters.shed == len(scores) == 12
    assert all(s.state == "unscorable" and s.reason == "shed: scoring queue full" for s in scores)
    assert all(s.extra["worker_id"] == config.worker_id for s in scores)
    assert ledger.figures()["pending_windows"] == 2  # the shed ones are on the broker; the queued two are not


def test_chunk_cost_counts_the_loop_between_back_to_back_chunks() -> None:
    from ingest.worker import ChunkCost

    cost = ChunkCost(keep=1, min_samples=1)  # the last chunk's cost
    cost.record(10.0, 10.0002)
    assert cost.ms == pytest.approx(0.2)
    cost.record(10.0005, 10.0007)  # 0.3 ms after the last one ended: back to back, the gap is counted
    assert cost.ms == pytest.approx(0.5)
    cost.record(11.0, 11.0001)  # after a pause (waiting for the broker): only its own time
    assert cost.ms == pytest.approx(0.1)
    robust = ChunkCost(keep=256, min_samples=64)
    robust.record(0.0, 2.0)  # the first chunk pays for warm-up
    for i in range(62):
        robust.record(10.0 + i, 10.0 + i + 0.0001)
    assert robust.ms is None  # too few yet
    robust.record(100.0, 100.0001)
    assert robust.ms == pytest.approx(0.1)  # the median: the 2-s outlier does not count


def test_a_chunk_stamped_ahead_does_not_close_every_other_beds_tick() -> None:
    """A bed whose clock runs ahead (or a forged time stamp within HOLMES_MAX_FUTURE_S) must not make the
    tracker take every genuine chunk for a straggler: the spread would read 0 and the planner assume
    aligned beds."""
    tracker = LoadTracker(hop_s=5.0)
    for tick in range(8):
        for bed in range(100):
            at = 1000.0 + tick + bed / 100
            tracker.chunk(f"bed-{bed}", at, at - 0.05)
        tracker.chunk("ahead", 1000.0 + tick + 0.5, 1000.0 + tick + 250.0)  # 250 s ahead
    load = tracker.load(1008.0)
    assert load.beds == 101
    assert load.spread_s == pytest.approx(0.99, abs=0.02)


def test_a_new_plan_warms_only_the_models_the_plan_in_force_did_not_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.zoo
    from ensemble.scoring import ServingPlan
    from ingest.worker import warm_plan

    by_id = {m.model_id: m for m in models.zoo.load_zoo()}
    old = ServingPlan.of([by_id["rr-mlp-h64-10s@1"], by_id["resnet1d-w8d3-2l-10s@1"]])
    shed = ServingPlan.of([by_id["rr-mlp-h64-10s@1"]])
    upgrade = ServingPlan.of([by_id["rr-mlp-h64-10s@1"], by_id["resnet1d-w16d4-rr-2l-10s@1"]])
    warmed: list[tuple[str, int]] = []
    monkeypatch.setattr(models.zoo, "warm_up", lambda model, sizes: warmed.append((model.model_id, max(sizes))))
    warm_plan(shed, 256, old)
    assert warmed == []  # a shed serves models that are warm already
    warm_plan(upgrade, 256, old)
    assert warmed == [("resnet1d-w16d4-rr-2l-10s@1", 256)]
    warm_plan(old, 64)
    assert warmed[1:] == [("rr-mlp-h64-10s@1", 64), ("resnet1d-w8d3-2l-10s@1", 64)]
