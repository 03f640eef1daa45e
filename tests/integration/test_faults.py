"""Faults on the real stack (embedded broker, workers, API, SQLite / PostgreSQL): nothing may be lost.

Each test streams real MIT-BIH beds faster than real time, breaks one part mid-stream, and then checks the
database holds every expected window exactly once, ``(bed_id, window_end_s)`` being the key scores are
idempotent on. Every test prints what it measured (``pytest -s`` shows it): windows expected, stored, lost
(expected zero), and how many scores were published more than once and deduplicated.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from holmes.settings import Settings
from holmes.supervisor import Stack
from ingest.broker import free_port
from ingest.codec import decode_score
from ingest.schemas import ScoreRecord
from ingest.topics import ensure_topics
from simulator.kafka import kafka_sender, make_producer
from simulator.replay import Simulator, SimulatorConfig, windows_expected

pytestmark = pytest.mark.integration

WINDOW_S, HOP_S, FS = 10.0, 5.0, 250.0
DB_OUTAGE_S = 30.0


# -- helpers ------------------------------------------------------------------------------------------------

def make_stack(bootstrap: str | None, tmp_path: Path, database_url: str, partitions: int = 4) -> Stack:
    """A stack on unique topics; ``bootstrap=None`` gives it its own embedded broker."""
    prefix = f"ft{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, state_dir=tmp_path,
                        waveform_partitions=partitions, score_partitions=2)
    env = {"HOLMES_TOPIC_PREFIX": prefix, "HOLMES_DATABASE_URL": database_url,
           "HOLMES_WAVEFORM_PARTITIONS": str(partitions), "HOLMES_SCORE_PARTITIONS": "2"}
    return Stack(settings, tmp_path, api_port=free_port(), env=env, embedded=bootstrap is None)


@dataclass
class Stream:
    """Simulated beds streaming on a thread, with the clock fixed so that every window end is known."""

    stack: Stack
    data_dir: Path
    beds: int
    duration_s: float
    speed: float
    start_time_s: float = field(default_factory=lambda: float(int(time.time())))
    error: BaseException | None = None
    started_at: float = 0.0

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-stream", daemon=True)

    def _run(self) -> None:
        config = SimulatorConfig(n_beds=self.beds, duration_s=self.duration_s, source="mitdb", chunk_s=1.0,
                                 speed=self.speed, data_dir=self.data_dir, seed=7, start_time_s=self.start_time_s)
        producer = make_producer(self.stack.bootstrap)
        try:
            send = kafka_sender(producer, self.stack.settings.topics().waveforms.name)
            Simulator(config, send).run(progress=False)
            send.flush()
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            producer.close()

    def start(self) -> Stream:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def sleep_until(self, wall_s: float) -> None:
        """Sleep until ``wall_s`` seconds after the stream started."""
        time.sleep(max(0.0, self.started_at + wall_s - time.monotonic()))

    def join(self) -> None:
        self._thread.join(self.duration_s / self.speed + 60)
        assert self.error is None, self.error

    def expected(self) -> set[tuple[str, float]]:
        """Every window of a clean run: ends at 10 s, 15 s, ... of each bed's clock (1-s chunks, all in step)."""
        n = windows_expected(self.duration_s, WINDOW_S, HOP_S)
        window_n, hop_n = round(WINDOW_S * FS), round(HOP_S * FS)
        out = set()
        for b in range(1, self.beds + 1):
            for k in range(n):
                last = window_n + k * hop_n - 1  # the window's last sample
                out.add((f"bed-{b:03d}", round(self.start_time_s + last // 250 + (last % 250) / FS, 3)))
        return out


def engine_for(database_url: str) -> sa.Engine:
    return sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))


def stored(database_url: str) -> list[tuple[str, float]]:
    """Every (bed, window end) row of the scores table."""
    engine = engine_for(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT bed_id, window_end_s FROM scores")).all()
    finally:
        engine.dispose()
    return [(r.bed_id, round(float(r.window_end_s), 3)) for r in rows]


def wait_stored(database_url: str, expected: set[tuple[str, float]], timeout_s: float) -> list[tuple[str, float]]:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(sa.exc.OperationalError):
            rows = stored(database_url)
            if expected <= set(rows) or time.monotonic() > deadline:
                return rows
        if time.monotonic() > deadline:
            return []
        time.sleep(0.5)


def published(bootstrap: str, topic: str) -> list[ScoreRecord]:
    """Every score record on the scores topic, re-publications included."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records = [decode_score(m.value) for m in consumer]
    consumer.close()
    return records


def committed(bootstrap: str, group: str) -> dict[int, int]:
    """The consumer group's committed offsets per partition."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fault-test")
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
        return {tp.partition: meta.offset for tp, meta in sorted(offsets.items())}
    finally:
        admin.close()


def api_figures(port: int) -> str:
    """The API consumer's own counters since it started (``/readyz``)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:  # noqa: S310
            body = json.loads(resp.read())
    except OSError as exc:
        return f"API figures unavailable: {exc}"
    return ("API consumer since its start: received {scores_received}, written {written}, duplicates ignored "
            "{duplicates}, write errors {write_errors}").format(**body)


def account(name: str, stream: Stream, rows: list[tuple[str, float]], records: list[ScoreRecord],
            took_s: float, note: str = "") -> int:
    """Print what was expected, stored, lost, duplicated and re-published; returns the windows lost."""
    expected = stream.expected()
    keys = Counter(rows)
    lost = len(expected - set(keys))
    unexpected = len(set(keys) - expected)
    duplicate_rows = sum(n - 1 for n in keys.values())
    republished = len(records) - len({(r.bed_id, r.window_end_s) for r in records})
    print(f"\n[fault {name}] windows expected {len(expected)}, stored {len(keys)}, LOST {lost}, unexpected "
          f"{unexpected}, duplicate rows {duplicate_rows}; scores published {len(records)} "
          f"({republished} re-published and deduplicated); {took_s:.0f} s{'; ' + note if note else ''}")
    assert unexpected == 0 and duplicate_rows == 0
    return lost


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'holmes.db'}"


# -- (a) the worker is SIGKILLed mid-stream and restarted -----------------------------------------------------

def test_worker_killed_and_restarted_loses_no_window(kafka_bootstrap: str, tmp_path: Path, data_dir: Path,
                                                      sqlite_url: str) -> None:
    t0 = time.monotonic()
    with make_stack(kafka_bootstrap, tmp_path, sqlite_url) as stack:
        stack.start()
        group = f"{stack.settings.topic_prefix}-worker"
        stream = Stream(stack, data_dir, beds=4, duration_s=60.0, speed=3.0).start()
        stream.sleep_until(9.0)  # ~27 s of each bed streamed: windows scored, some in flight, offsets committed
        at_kill = committed(stack.bootstrap, group)
        stack.kill("worker")  # SIGKILL: no drain, no final commit
        killed_at = time.monotonic()
        stack.spawn_worker("worker")
        restarted_in = time.monotonic() - killed_at
        stream.join()
        rows = wait_stored(sqlite_url, stream.expected(), timeout_s=60)
        records = published(stack.bootstrap, stack.settings.topics().scores.name)
    lost = account("a: worker SIGKILL + restart", stream, rows, records, time.monotonic() - t0,
                   f"committed offsets at the kill {at_kill}, back after {restarted_in:.0f} s")
    assert at_kill and any(v > 0 for v in at_kill.values()), "nothing was committed before the kill"
    assert lost == 0


# -- (b) two workers in one group, one is SIGKILLed: its partitions move --------------------------------------

def test_killed_workers_partitions_move_to_the_survivor_without_loss(kafka_bootstrap: str, tmp_path: Path,
                                                                     data_dir: Path, sqlite_url: str) -> None:
    t0 = time.monotonic()
    with make_stack(kafka_bootstrap, tmp_path, sqlite_url, partitions=8) as stack:
        stack.start(workers=2)
        names = {stack.child(n).pid: n for n in ("worker", "worker-2")}
        stream = Stream(stack, data_dir, beds=8, duration_s=60.0, speed=3.0).start()
        stream.sleep_until(9.0)
        stack.kill("worker-2")
        killed_at = time.time()
        stream.join()
        rows = wait_stored(sqlite_url, stream.expected(), timeout_s=60)
        records = published(stack.bootstrap, stack.settings.topics().scores.name)
    before: dict[str, set[str]] = {}
    after: dict[str, set[str]] = {}
    for r in records:
        worker = names.get(int(str(r.extra.get("worker_id", ":0")).rsplit(":", 1)[-1]), "?")
        (before if r.scored_at_s < killed_at else after).setdefault(worker, set()).add(r.bed_id)
    split = "; ".join(f"{w}: {sorted(b)}" for w, b in sorted(before.items()))
    moved = "; ".join(f"{w}: {sorted(b)}" for w, b in sorted(after.items()))
    lost = account("b: two workers, one SIGKILLed", stream, rows, records, time.monotonic() - t0,
                   f"beds before the kill {split}; after {moved}")
    assert len(before) == 2, "both workers should have scored beds before the kill"
    assert set(after) == {"worker"} and after["worker"] == {f"bed-{b:03d}" for b in range(1, 9)}
    assert lost == 0


# -- (c) the API is SIGKILLed and restarted while scores flow ----------------------------------------------

def test_api_restart_loses_no_score(kafka_bootstrap: str, tmp_path: Path, data_dir: Path,
                                    database_url: str) -> None:
    t0 = time.monotonic()
    with make_stack(kafka_bootstrap, tmp_path, database_url) as stack:
        stack.start()
        stream = Stream(stack, data_dir, beds=4, duration_s=60.0, speed=3.0).start()
        stream.sleep_until(9.0)
        before = len(stored(database_url))
        stack.restart("api")  # SIGKILL, then the same command again
        stream.join()
        rows = wait_stored(database_url, stream.expected(), timeout_s=60)
        records = published(stack.bootstrap, stack.settings.topics().scores.name)
        figures = api_figures(stack.api_port)
    lost = account("c: API SIGKILL + restart", stream, rows, records, time.monotonic() - t0,
                   f"{before} rows stored before the kill; restarted {figures}")
    assert before > 0 and lost == 0


# -- (d) the database is unreachable for 30 s -------------------------------------------------------------------

class TcpProxy:
    """Forwards a local port to ``target``; :meth:`cut` drops every connection and refuses new ones (the
    database host unreachable) until :meth:`restore`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept() (a bare close does not)
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if listener is not self._listener:
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def sqlite_locked(path: Path) -> Iterator[Callable[[], int]]:
    """Hold an exclusive lock on a SQLite file (no other connection can write); yields a row counter that
    reads through the lock holder."""
    conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield lambda: int(conn.execute("SELECT count(*) FROM scores").fetchone()[0])
    finally:
        conn.execute("COMMIT")
        conn.close()


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_database_unreachable_for_30_s_then_everything_is_written(
    db: str, kafka_bootstrap: str, tmp_path: Path, data_dir: Path, request: pytest.FixtureRequest
) -> None:
    t0 = time.monotonic()
    proxy: TcpProxy | None = None
    if db == "sqlite":
        url = f"sqlite:///{tmp_path / 'holmes.db'}"
        direct = url
    else:
        direct = str(request.getfixturevalue("postgres_url"))
        parsed = sa.engine.make_url(direct)
        proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
        url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    with make_stack(kafka_bootstrap, tmp_path, url) as stack:
        stack.start()
        stream = Stream(stack, data_dir, beds=4, duration_s=100.0, speed=4.0).start()
        stream.sleep_until(4.0)
        if proxy is not None:
            proxy.cut()
            at_cut = len(stored(direct))
            time.sleep(DB_OUTAGE_S)
            at_restore = len(stored(direct))
            proxy.restore()
        else:
            with sqlite_locked(tmp_path / "holmes.db") as count:
                at_cut = count()
                time.sleep(DB_OUTAGE_S)
                at_restore = count()
        restored_at = time.monotonic()
        stream.join()
        rows = wait_stored(direct, stream.expected(), timeout_s=60)
        caught_up_s = time.monotonic() - restored_at
        records = published(stack.bootstrap, stack.settings.topics().scores.name)
        figures = api_figures(stack.api_port)
        if proxy is not None:
            proxy.cut()
    lost = account(f"d: {db} unreachable for {DB_OUTAGE_S:.0f} s", stream, rows, records, time.monotonic() - t0,
                   f"rows {at_cut} when it went away, {at_restore} when it came back, all stored "
                   f"{caught_up_s:.0f} s later; {figures}")
    assert at_restore == at_cut, "nothing can have been written while the database was away"
    assert lost == 0


# -- (e) the embedded broker restarts: it keeps nothing ---------------------------------------------------------

def test_broker_restart_loses_its_log_but_worker_and_api_resume_on_new_data(tmp_path: Path, data_dir: Path,
                                                                          sqlite_url: str) -> None:
    """Tansu keeps everything in memory: a restart loses topics, records and committed offsets (BROKER.md).
    What was in flight is lost with it; what must hold is that the worker and the API reconnect by
    themselves and score what is streamed after the restart."""
    t0 = time.monotonic()
    with make_stack(None, tmp_path, sqlite_url) as stack:
        stack.start()
        first = Stream(stack, data_dir, beds=3, duration_s=30.0, speed=5.0).start()
        first.join()
        rows_first = wait_stored(sqlite_url, first.expected(), timeout_s=30)
        assert stack.broker is not None
        port = stack.broker.port
        stack.broker.stop()
        stack.start_broker(port=port)
        ensure_topics(stack.bootstrap, stack.settings.topics().all())
        restarted_at = time.monotonic()
        # a new stream clock two minutes on: new window keys, and within the worker's HOLMES_MAX_FUTURE_S
        second = Stream(stack, data_dir, beds=3, duration_s=30.0, speed=5.0,
                        start_time_s=first.start_time_s + 120.0).start()
        second.join()
        rows = wait_stored(sqlite_url, first.expected() | second.expected(), timeout_s=60)
        resumed_s = time.monotonic() - restarted_at
        records = published(stack.bootstrap, stack.settings.topics().scores.name)
        alive = {c.name: c.alive() for c in stack.children}
    lost_first = len(first.expected() - set(rows_first))
    lost = account("e: broker restart", second, [r for r in rows if r in second.expected()], records,
                   time.monotonic() - t0, f"before the restart {len(rows_first)} stored ({lost_first} lost); "
                   f"new data stored within {resumed_s:.0f} s of the restart; children alive {alive}")
    assert lost_first == 0 and all(alive.values()) and lost == 0
