"""``holmes scaleout``: one worker, then two in one consumer group, against the same backlog; who scored what.

Each run starts an embedded broker with fresh topics (16 waveform partitions by default), starts the workers
and waits until the group's assignment has settled, then produces N beds x S simulated seconds as fast as the
simulator can (a backlog, so the figure is the workers' capacity, not the simulator's pace) and reads the
scores topic until every expected window has a score. Throughput is windows scored per second from the
first chunk produced to the last score. The two runs serve the same ensemble: the first plan is made for N
beds (``HOLMES_PLAN_BEDS``), re-planning waits ``HOLMES_REPLAN_INTERVAL_S`` (60 s), and the windows' clock
starts an hour ahead so that no deadline passes while the backlog drains (a late window would skip models
and make the comparison unfair); the workers accept time stamps up to two hours ahead for it
(``HOLMES_MAX_FUTURE_S``). The API is not started: it would compete for the same cores; losses are
counted on the scores topic, by ``(bed_id, window_end_s)``, the key the API stores scores under.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from holmes.bench import machine_description
from holmes.settings import Settings
from holmes.supervisor import Stack
from ingest.codec import decode_score
from simulator.replay import windows_expected

log = logging.getLogger(__name__)

__all__ = ["ScaleoutOptions", "ScoreReader", "run_scaleout"]


@dataclass(frozen=True, slots=True)
class ScaleoutOptions:
    beds: int
    duration_s: float
    partitions: int = 16
    hop_s: float = 5.0
    window_s: float = 10.0
    source: str = "mitdb"
    timeout_s: float = 300.0
    settle_s: float = 3.0
    json_path: Path | None = None


class ScoreReader:
    """Reads every score on the scores topic (no consumer group) on a thread: arrival time and worker id."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        #: (bed_id, window_end_s) -> (first arrival, worker id)
        self.first: dict[tuple[str, float], tuple[float, str]] = {}
        self.published = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scaleout-scores", daemon=True)

    def start(self) -> ScoreReader:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"could not read {self.topic}: {self.error}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def distinct(self) -> int:
        with self._lock:
            return len(self.first)

    def snapshot(self) -> dict[tuple[str, float], tuple[float, str]]:
        with self._lock:
            return dict(self.first)

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        try:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                     fetch_max_wait_ms=20, client_id="holmes-scaleout")
            partitions = None
            deadline = time.monotonic() + 30
            while not partitions and time.monotonic() < deadline:
                partitions = consumer.partitions_for_topic(self.topic)
                if not partitions:
                    time.sleep(0.2)
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions or ())]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            self._ready.set()
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    now = time.time()
                    for record in records:
                        score = decode_score(record.value)
                        key = (score.bed_id, score.window_end_s)
                        with self._lock:
                            self.published += 1
                            if key not in self.first:
                                self.first[key] = (now, str(score.extra.get("worker_id", "?")))
            consumer.close()
        except Exception as exc:  # reported by start() or the summary
            self.error = exc
            self._ready.set()


def _settled(stack: Stack, names: list[str], quiet_s: float) -> bool:
    """Every worker has partitions and no rebalance finished in the last ``quiet_s`` seconds."""
    files = [stack.ready_file(n) for n in names]
    return all(f.exists() for f in files) and time.time() - max(f.stat().st_mtime for f in files) > quiet_s


def run_once(settings: Settings, options: ScaleoutOptions, workers: int) -> dict[str, Any]:
    """One run with ``workers`` workers: start, settle, produce the backlog, wait for every window."""
    from simulator.kafka import kafka_sender, make_producer
    from simulator.replay import Simulator, SimulatorConfig

    run_dir = Path(tempfile.mkdtemp(prefix=f"holmes-scaleout-{workers}w-"))
    prefix = f"scale{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={
        "topic_prefix": prefix, "state_dir": run_dir, "hop_s": options.hop_s, "window_s": options.window_s,
        "kafka_bootstrap": None, "waveform_partitions": options.partitions,
    })
    env = {"HOLMES_TOPIC_PREFIX": prefix, "HOLMES_HOP_S": str(options.hop_s), "HOLMES_WINDOW_S": str(options.window_s),
           "HOLMES_WAVEFORM_PARTITIONS": str(options.partitions), "HOLMES_LOG_LEVEL": "warning",
           "HOLMES_PLAN_BEDS": str(options.beds), "HOLMES_REPLAN_INTERVAL_S": "60", "HOLMES_MAX_FUTURE_S": "7200"}
    per_bed = windows_expected(options.duration_s, options.window_s, options.hop_s)
    expected = options.beds * per_bed
    names = ["worker" if i == 0 else f"worker-{i + 1}" for i in range(workers)]
    print(f"scaleout: {workers} worker(s), {options.beds} beds x {options.duration_s:.0f} s backlog, "
          f"{options.partitions} partitions -> {expected} windows; logs in {run_dir}", flush=True)
    with Stack(settings, run_dir, env=env, embedded=True) as stack:
        stack.start(workers=workers, api=False)
        deadline = time.monotonic() + 60
        while not _settled(stack, names, options.settle_s):
            if time.monotonic() > deadline:
                raise TimeoutError("the workers' consumer group did not settle within 60 s")
            time.sleep(0.2)
        pids = {stack.child(n).pid: n for n in names}
        procs = {n: psutil.Process(stack.child(n).pid) for n in names}
        cpu0 = {n: sum(p.cpu_times()[:2]) for n, p in procs.items()}
        reader = ScoreReader(stack.bootstrap, settings.topics().scores.name).start()
        producer = make_producer(stack.bootstrap)
        config = SimulatorConfig(n_beds=options.beds, duration_s=options.duration_s, source=options.source,  # type: ignore[arg-type]
                                 chunk_s=1.0, speed=1e6, data_dir=settings.data_dir,
                                 start_time_s=time.time() + 3600.0)
        t0 = time.time()
        try:
            send = kafka_sender(producer, settings.topics().waveforms.name)
            sim = Simulator(config, send).run(progress=False)
            send.flush()
        finally:
            producer.close()
        produced_s = time.time() - t0
        end = time.monotonic() + options.timeout_s
        while reader.distinct < expected and time.monotonic() < end:
            for n in names:
                if not stack.child(n).alive():
                    raise RuntimeError(f"{n} died:\n{stack.child(n).tail()}")
            time.sleep(0.2)
        scores = reader.snapshot()
        published = reader.published
        reader.stop()
        cpu = {n: round(sum(p.cpu_times()[:2]) - cpu0[n], 1) for n, p in procs.items()}
        # the workers write their stats every 10 s: wait for one written after the last score
        done_at = max((t for t, _ in scores.values()), default=time.time())
        end = time.monotonic() + 12.0
        while time.monotonic() < end and not all((_stats(run_dir, n) or {}).get("at_s", 0) > done_at for n in names):
            time.sleep(0.5)
        stats = {n: _stats(run_dir, n) for n in names}
    last = max((t for t, _ in scores.values()), default=t0)
    first = min((t for t, _ in scores.values()), default=t0)
    by_worker: dict[str, set[str]] = {}
    windows_by_worker: Counter[str] = Counter()
    for (bed, _), (_, worker_id) in scores.items():
        pid = int(worker_id.rsplit(":", 1)[-1]) if worker_id.rsplit(":", 1)[-1].isdigit() else -1
        name = pids.get(pid, worker_id)
        by_worker.setdefault(name, set()).add(bed)
        windows_by_worker[name] += 1
    wall_s = last - t0
    return {
        "workers": workers,
        "beds": options.beds,
        "duration_s": options.duration_s,
        "partitions": options.partitions,
        "windows_expected": expected,
        "windows_scored": len(scores),
        "windows_lost": max(0, expected - len(scores)),
        "scores_published": published,
        "duplicates_published": published - len(scores),
        "chunks_produced": sim.total_sent,
        "produce_s": round(produced_s, 2),
        "first_score_s": round(first - t0, 2),
        "drain_s": round(wall_s, 2),
        "throughput_windows_per_s": round(len(scores) / wall_s, 1) if wall_s > 0 else None,
        "beds_by_worker": {n: sorted(b) for n, b in sorted(by_worker.items())},
        "windows_by_worker": dict(sorted(windows_by_worker.items())),
        "cpu_seconds_by_worker": cpu,
        "plans": {n: (s or {}).get("plan", {}).get("members") for n, s in stats.items()},
        "max_queue_depth": {n: (s or {}).get("executor", {}).get("max_depth") for n, s in stats.items()},
    }


def _stats(run_dir: Path, name: str) -> dict[str, Any] | None:
    path = run_dir / "worker" / "stats.json" if name == "worker" else run_dir / name / "worker" / "stats.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _format(r: dict[str, Any]) -> str:
    lines = [f"  {r['workers']} worker(s): {r['windows_scored']}/{r['windows_expected']} windows scored, "
             f"lost {r['windows_lost']}, {r['duplicates_published']} re-published (deduplicated by key); "
             f"{r['chunks_produced']} chunks produced in {r['produce_s']} s; last score after {r['drain_s']} s "
             f"-> {r['throughput_windows_per_s']} windows/s"]
    for name, beds in r["beds_by_worker"].items():
        lines.append(f"    {name}: {len(beds)} beds, {r['windows_by_worker'][name]} windows, "
                     f"cpu {r['cpu_seconds_by_worker'].get(name)} s, max queue {r['max_queue_depth'].get(name)}: "
                     f"{', '.join(beds)}")
    return "\n".join(lines)


def run_scaleout(settings: Settings, options: ScaleoutOptions) -> dict[str, Any]:
    """One worker, then two, back to back on the same backlog; prints both and the throughput ratio."""
    runs = [run_once(settings, options, workers) for workers in (1, 2)]
    one, two = runs
    ratio = (round(two["throughput_windows_per_s"] / one["throughput_windows_per_s"], 2)
             if one["throughput_windows_per_s"] and two["throughput_windows_per_s"] else None)
    overlap = set.intersection(*(set(b) for b in two["beds_by_worker"].values())) if len(
        two["beds_by_worker"]) > 1 else set()
    result = {"runs": runs, "throughput_ratio_2_over_1": ratio, "beds_scored_by_both_workers": sorted(overlap),
              "machine": machine_description()}
    print(f"\nscaleout, {options.beds} beds x {options.duration_s:.0f} s backlog, {options.partitions} partitions, "
          f"one consumer group ({result['machine']}):")
    for r in runs:
        print(_format(r))
    print(f"  ensembles served: {[r['plans'] for r in runs]}")
    print(f"  throughput 2 workers / 1 worker: {ratio}")
    if overlap:
        print(f"  beds scored by both workers (a rebalance moved them): {', '.join(sorted(overlap))}")
    if options.json_path:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(result, indent=2))
        print(f"wrote {options.json_path}")
    return result
