"""CPU cost of the api's score path: decode -> check -> broadcast -> store (PostgreSQL) -> metrics.

Pushes realistic encoded score records (the worker's ``extra`` fields and a 200-value ECG strip) through
``ScoreConsumer.handle_messages``, the code the Kafka loop runs per fetch, into a fresh PostgreSQL database,
with a few WebSocket-like clients draining the hub, and reports the api process's CPU seconds per 1,000 scores
(``time.process_time``: every thread of this process), and those of its PostgreSQL backends where the server runs
on this machine (``/proc``)::

    .venv/bin/python -m api.bench_ingest --scores 20000 --beds 1000 --batch 100 --clients 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import create_engine, event

from api.config import ApiConfig
from api.consumer import ScoreConsumer
from api.db import ScoreStore, make_engine
from api.hub import Hub
from api.metrics import Metrics
from api.migrate import upgrade_api
from ingest.codec import encode_score
from ingest.schemas import ScoreRecord

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MODELS = ("rr-af@1", "cnn1d@2", "hrv-gbm@1")


def realistic_scores(n: int, beds: int, hop_s: float = 5.0, seed: int = 0, t0: float | None = None
                     ) -> list[ScoreRecord]:
    """``n`` scores of ``beds`` beds, one window per bed per hop, as a worker publishes them (ending now)."""
    rng = random.Random(seed)
    t0 = time.time() - (n // beds + 2) * hop_s if t0 is None else t0
    # A few beds in AF, so that alerts are raised and cleared along the way.
    af = {b for b in range(beds) if b % 37 == 0}
    out = []
    for i in range(n):
        bed, hop = i % beds, i // beds
        end = t0 + hop * hop_s + bed * (hop_s / beds)
        unscorable = rng.random() < 0.02
        partial = rng.random() < 0.05
        risk = None if unscorable else round(rng.uniform(0.6, 0.99) if bed in af and (hop // 8) % 2 == 0
                                             else rng.uniform(0.0, 0.4), 4)
        extra: dict[str, float | int | str | None] = {
            "plan_id": 3, "partial": int(partial), "skipped_models": "cnn1d@2" if partial else "",
            "budget_ms": 1000.0, "predicted_ms": 312.4, "measured_ms": round(rng.uniform(80, 600), 1),
            "ingest_ms": round(rng.uniform(0.5, 5), 2), "queue_ms": round(rng.uniform(0, 80), 2),
            "exec_ms": round(rng.uniform(20, 200), 2), "batch": rng.randint(1, 32),
            "queue_depth": rng.randint(0, 120), "worker_id": f"host-{bed % 4}:{1000 + bed % 4}",
        }
        strip = tuple(round(rng.gauss(0.0, 0.4), 3) for _ in range(200))
        out.append(ScoreRecord(
            bed_id=f"bed-{bed:04d}", window_end_s=end, window_s=30.0,
            state="unscorable" if unscorable else "ok", risk=risk,
            reason="flat line" if unscorable else None, quality=round(rng.uniform(0.6, 1.0), 3),
            heart_rate_bpm=None if unscorable else round(rng.uniform(50, 140), 1), complete=rng.random() > 0.01,
            models=MODELS[:2] if partial else MODELS, scored_at_s=end + 0.2, seq_last=hop * 5 + 4,
            extra=extra, strip_hz=50.0, strip_mv=strip,
        ))
    return out


def raw(value: bytes, offset: int) -> Any:
    return ConsumerRecord(topic="bench.scores", partition=0, offset=offset, timestamp=0, timestamp_type=0, key=None,
                          value=value, checksum=None, serialized_key_size=0, serialized_value_size=len(value),
                          headers=[])


async def _drain(sub: Any, sink: list[int]) -> None:
    # What a WebSocket client costs the api besides the send itself: taking each message off its queue.
    while (message := await sub.get()) is not None:
        sink[0] += len(message)


def _server_cpu_s(pids: set[int]) -> float | None:
    """CPU seconds of these PostgreSQL backends (``/proc``: the server must run on this machine)."""
    total = 0.0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


async def run(url: str, args: argparse.Namespace) -> dict[str, float | None]:
    records = realistic_scores(args.scores + args.warmup, args.beds)
    messages = [raw(encode_score(r), i) for i, r in enumerate(records)]
    batches = [messages[i:i + args.batch] for i in range(0, len(messages), args.batch)]
    warm = args.warmup // args.batch
    engine = make_engine(url)
    upgrade_api(engine)
    engine.dispose()
    backends: set[int] = set()

    def note_backend(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            backends.add(cur.fetchone()[0])

    event.listen(engine, "connect", note_backend)
    hub = Hub(queue_size=4096)
    consumer = ScoreConsumer(ApiConfig(database_url=url), ScoreStore(engine), hub, metrics=Metrics())
    sink = [0]
    subs = [hub.subscribe() for _ in range(args.clients)]
    drains = [asyncio.create_task(_drain(s, sink)) for s in subs]
    try:
        for batch in batches[:warm]:
            await consumer.handle_messages(batch)
            await asyncio.sleep(0)
        server0 = _server_cpu_s(backends)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for batch in batches[warm:]:
            await consumer.handle_messages(batch)
            await asyncio.sleep(0)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        server1 = _server_cpu_s(backends)
    finally:
        for s in subs:
            s.close()
        await asyncio.gather(*drains)
        engine.dispose()
    n = args.scores
    stats = consumer.stats
    server = None if server0 is None or server1 is None else server1 - server0
    return {"scores": n, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "cpu_s_per_1000": round(cpu / n * 1000, 4),
            "postgres_cpu_s_per_1000": None if server is None else round(server / n * 1000, 4),
            "written": stats.written, "rejected": stats.rejected, "undecodable": stats.undecodable,
            "alerts_published": hub.published - stats.received, "ws_bytes": sink[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scores", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--beds", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=100, help="scores per Kafka fetch")
    parser.add_argument("--clients", type=int, default=2, help="WebSocket-like subscribers of the hub")
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL,
                        help="PostgreSQL URL allowed to create a scratch database")
    args = parser.parse_args()
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    name = f"holmes_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        result = asyncio.run(run(args.admin_url.rsplit("/", 1)[0] + f"/{name}", args))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
