"""Simulator -> embedded broker -> Faust worker -> scores topic -> API -> database and WebSocket, for real."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, KafkaProducer

from holmes.settings import Settings
from holmes.supervisor import Stack
from ingest.broker import free_port
from ingest.codec import decode_plan, encode_chunk
from ingest.schemas import WaveformChunk
from simulator.events import parse_event
from simulator.kafka import kafka_sender, make_producer
from simulator.replay import Simulator, SimulatorConfig, windows_expected

pytestmark = pytest.mark.integration

BEDS = 3
DURATION_S = 30.0
SPEED = 5.0


class WsCollector:
    """A WebSocket client on a thread, the way the dashboard sees scores."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[dict] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        import websockets

        async with websockets.connect(self.url) as ws:
            self.connected.set()
            while not self._stop.is_set():
                try:
                    self.messages.append(json.loads(await asyncio.wait_for(ws.recv(), 0.2)))
                except TimeoutError:
                    continue

    def __enter__(self) -> WsCollector:
        self._thread.start()
        assert self.connected.wait(20), "WebSocket did not connect"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def scores(self) -> dict[tuple[str, float], dict]:
        out = {}
        for m in self.messages:
            if m.get("type") == "score":
                s = m["score"]
                out[(s["bed_id"], round(s["window_end_s"], 3))] = s
        return out


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path, database_url: str) -> Iterator[Stack]:
    prefix = f"it{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, state_dir=tmp_path,
                        waveform_partitions=4, score_partitions=2)
    env = {"HOLMES_TOPIC_PREFIX": prefix, "HOLMES_DATABASE_URL": database_url,
           "HOLMES_WAVEFORM_PARTITIONS": "4", "HOLMES_SCORE_PARTITIONS": "2"}
    with Stack(settings, tmp_path, api_port=free_port(), env=env) as s:
        yield s.start()


def bad_messages(t0: float) -> list[tuple[bytes | None, bytes, str]]:
    """(key, value, expected dead-letter reason) for every class of bad input the worker must survive."""
    ok = WaveformChunk("bed-bad", 0, t0, 250.0, ("I",), np.zeros((1, 250), np.int16), 200.0)
    nan = bytearray(encode_chunk(WaveformChunk("bed-bad", 1, t0, 250.0, ("I",), np.zeros((1, 250), np.float32))))
    nan[-4:] = np.array([np.nan], dtype="<f4").tobytes()  # the encoder refuses NaN; a broken monitor might not
    rate = WaveformChunk("bed-bad", 2, t0, 360.0, ("I",), np.zeros((1, 360), np.int16), 200.0)
    good = encode_chunk(ok)
    return [
        (b"bed-bad", b"\x00\x01garbage", "truncated"),
        (b"bed-bad", b'{"bed_id": "bed-bad", "samples": [0.1, 0.2]}', "bad-magic"),
        (b"bed-bad", good[:2] + bytes([7]) + good[3:], "wrong-schema"),
        (b"bed-bad", good + b"\x00" * 300_000, "oversized"),
        (b"bed-bad", bytes(nan), "non-finite"),
        (b"bed-bad", encode_chunk(rate), "wrong-rate"),
        (b"someone-else", good, "key-mismatch"),
    ]


def test_scores_reach_websocket_database_and_bad_input_reaches_dead_letters(
    stack: Stack, data_dir: Path, database_url: str
) -> None:
    topics = stack.settings.topics()
    events = (parse_event("drop@bed-002:12+2"), parse_event("lead-off@bed-003:0+30"))
    config = SimulatorConfig(n_beds=BEDS, duration_s=DURATION_S, source="mitdb", chunk_s=1.0, speed=SPEED,
                             data_dir=data_dir, events=events, seed=3)
    bad = bad_messages(time.time())
    with WsCollector(f"ws://127.0.0.1:{stack.api_port}/ws/scores") as ws:
        producer = make_producer(stack.bootstrap)
        try:
            raw = KafkaProducer(bootstrap_servers=stack.bootstrap)
            for key, value, _ in bad:
                raw.send(topics.waveforms.name, key=key, value=value)
            raw.flush()
            raw.close()
            send = kafka_sender(producer, topics.waveforms.name)
            stats = Simulator(config, send).run(progress=False)
            send.flush()
        finally:
            producer.close()
        per_bed = windows_expected(DURATION_S, 10.0, 5.0)
        deadline = time.time() + 30
        while time.time() < deadline and len(ws.scores()) < BEDS * per_bed:
            time.sleep(0.2)
        scores = ws.scores()

    assert stats.dropped == 2
    by_bed: dict[str, list[dict]] = {}
    for (bed, _), s in sorted(scores.items()):
        by_bed.setdefault(bed, []).append(s)
    assert {b: len(v) for b, v in by_bed.items()} == dict.fromkeys(config.bed_ids, per_bed)

    # bed-001 streams clean MIT-BIH ECG: every window scored with a real probability by the plan in force,
    # whose provenance every score carries.
    assert all(s["state"] == "ok" and 0.0 <= s["risk"] <= 1.0 and s["models"] for s in by_bed["bed-001"])
    plan_consumer = KafkaConsumer(topics.plans.name, bootstrap_servers=stack.bootstrap,
                                  auto_offset_reset="earliest", consumer_timeout_ms=3000)
    plans = [decode_plan(m.value) for m in plan_consumer]
    plan_consumer.close()
    assert plans and plans[0].reason.startswith("start") and plans[0].budget_ms > 0
    in_force = {p.plan_id: p for p in plans}
    for s in by_bed["bed-001"]:
        plan = in_force[s["extra"]["plan_id"]]
        assert set(s["models"]) <= set(plan.members)
        # (measured_ms can be negative here: the replay runs faster than real time)
        assert s["extra"]["budget_ms"] == plan.budget_ms and isinstance(s["extra"]["measured_ms"], float)
        assert s["extra"]["predicted_ms"] == pytest.approx(plan.predicted_p99_ms, abs=0.1)
        assert s["status"] == ("partial" if s["extra"]["skipped_models"] else "ok")
    # bed-002 lost seconds 12-13: the windows that contain them are incomplete, never stitched.
    incomplete = [s for s in by_bed["bed-002"] if not s["complete"]]
    assert [round(s["window_end_s"] - by_bed["bed-002"][0]["window_end_s"]) for s in incomplete] == [5, 10]
    assert all(s["state"] == "unscorable" and s["reason"].startswith("gap") for s in incomplete)
    # bed-003's leads are off for the whole run: unscorable with the reason, not a number.
    assert all(s["state"] == "unscorable" and s["reason"] == "flat-line" for s in by_bed["bed-003"])

    # Every bad message is in the dead-letter topic with its reason.
    consumer = KafkaConsumer(topics.deadletter.name, bootstrap_servers=stack.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    letters = [json.loads(m.value) for m in consumer]
    consumer.close()
    assert sorted(letter["reason"] for letter in letters) == sorted(reason for _, _, reason in bad)
    assert all(letter["payload_b64"] and letter["topic"] == topics.waveforms.name for letter in letters)

    # The database holds exactly the scores the page saw (written in batches after broadcasting).
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    deadline = time.time() + 10
    rows: list = []
    while time.time() < deadline:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT bed_id, window_end_s, state FROM scores")).all()
        if len(rows) >= len(scores):
            break
        time.sleep(0.3)
    engine.dispose()
    assert {(r.bed_id, round(r.window_end_s, 3)) for r in rows} == set(scores)
