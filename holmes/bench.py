"""``holmes bench``: the whole system, embedded, against simulated beds; a WebSocket client plays the dashboard.

End-to-end latency of a window = the moment its score reaches the WebSocket client minus the acquisition time
of the window's last sample (the simulator's clock, which is the wall clock at speed 1).
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from tqdm import tqdm

from holmes.settings import Settings
from holmes.supervisor import Stack
from ingest.broker import free_port
from simulator.replay import windows_expected

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BenchOptions:
    beds: int
    duration_s: float
    hop_s: float = 5.0
    window_s: float = 10.0
    source: str = "mitdb"
    chunk_s: float = 1.0
    deadline_ms: float = 1000.0
    drain_s: float = 20.0
    json_path: Path | None = None


class ScoreListener:
    """A WebSocket client on its own thread that stamps every score message on arrival."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.arrivals: dict[tuple[str, float], float] = {}
        self.states: dict[str, int] = {}
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="bench-ws", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> ScoreListener:
        self._thread.start()
        if not self.connected.wait(30):
            raise RuntimeError(f"could not connect to {self.url}: {self.error}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        import websockets

        try:
            async with websockets.connect(self.url, max_size=None) as ws:
                self.connected.set()
                while not self._stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.2)
                    except TimeoutError:
                        continue
                    now = time.time()
                    msg = json.loads(raw)
                    if msg.get("type") != "score":
                        continue
                    score = msg["score"]
                    key = (score["bed_id"], round(float(score["window_end_s"]), 3))
                    if key not in self.arrivals:
                        self.arrivals[key] = now - float(score["window_end_s"])
                        self.states[score["state"]] = self.states.get(score["state"], 0) + 1
        except Exception as exc:  # reported by start() or the summary
            self.error = exc
            self.connected.set()


class ResourceSampler:
    """Samples CPU time and RSS of this process tree (broker, worker, API, simulator) twice a second."""

    def __init__(self) -> None:
        self.root = psutil.Process()
        self.peak_rss_mb = 0.0
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-psutil", daemon=True)

    def start(self) -> ResourceSampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        rss = 0
        for proc in [self.root, *self.root.children(recursive=True)]:
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    t = proc.cpu_times()
                    self._cpu[proc.pid] = t.user + t.system
            except psutil.Error:
                continue
        self.peak_rss_mb = max(self.peak_rss_mb, rss / 2**20)

    @property
    def cpu_seconds(self) -> float:
        return float(sum(self._cpu.values()))

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        self._thread.join(5)


def machine_description() -> str:
    return f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, " \
           f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.system()} {platform.release()}"


def run_bench(settings: Settings, options: BenchOptions) -> dict[str, Any]:
    """Start an embedded stack with unique topics, stream, collect, summarise, stop."""
    run_dir = Path(tempfile.mkdtemp(prefix="holmes-bench-"))
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={
        "topic_prefix": prefix, "state_dir": run_dir, "hop_s": options.hop_s, "window_s": options.window_s,
        "kafka_bootstrap": None,
    })
    api_port = free_port()
    env = {"HOLMES_TOPIC_PREFIX": prefix, "HOLMES_HOP_S": str(options.hop_s),
           "HOLMES_WINDOW_S": str(options.window_s), "HOLMES_DATABASE_URL": f"sqlite:///{run_dir / 'bench.db'}",
           "HOLMES_LOG_LEVEL": "warning"}
    expected = options.beds * windows_expected(options.duration_s, options.window_s, options.hop_s)
    sampler = ResourceSampler().start()
    print(f"bench: {options.beds} beds x {options.duration_s:.0f} s, hop {options.hop_s} s, "
          f"window {options.window_s} s -> {expected} windows expected; logs in {run_dir}", flush=True)
    with Stack(settings, run_dir, api_port=api_port, env=env, embedded=True) as stack:
        stack.start()
        listener = ScoreListener(f"ws://127.0.0.1:{api_port}/ws/scores").start()
        t_start = time.time()
        sim = stack.spawn("simulator", [
            "simulate", "--beds", str(options.beds), "--duration", str(options.duration_s),
            "--source", options.source, "--chunk-s", str(options.chunk_s), "--quiet",
        ])
        with tqdm(total=expected, desc="windows scored", unit="win", mininterval=1.0) as bar:
            deadline = None
            while True:
                bar.update(len(listener.arrivals) - bar.n)
                if len(listener.arrivals) >= expected:
                    break
                if not sim.alive():
                    if sim.proc.returncode != 0:
                        raise RuntimeError(f"simulator failed:\n{sim.tail()}")
                    deadline = deadline or time.time() + options.drain_s
                    if time.time() > deadline:
                        break
                time.sleep(0.2)
            bar.update(len(listener.arrivals) - bar.n)
        t_end = time.time()
        sampler.stop()
        listener.stop()
    result = summarise(options, expected, listener, sampler, t_end - t_start)
    print(format_result(result))
    if options.json_path:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(result, indent=2))
        print(f"wrote {options.json_path}")
    return result


def summarise(options: BenchOptions, expected: int, listener: ScoreListener, sampler: ResourceSampler,
              wall_s: float) -> dict[str, Any]:
    latencies_ms = np.array(list(listener.arrivals.values()), dtype=float) * 1000.0
    scored = len(latencies_ms)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(latencies_ms, q)), 1) if scored else None

    missed = int((latencies_ms > options.deadline_ms).sum()) + max(0, expected - scored)
    return {
        "beds": options.beds,
        "duration_s": options.duration_s,
        "hop_s": options.hop_s,
        "window_s": options.window_s,
        "windows_expected": expected,
        "windows_scored": scored,
        "windows_lost": max(0, expected - scored),
        "latency_ms": {"p50": pct(50), "p95": pct(95), "p99": pct(99),
                       "max": round(float(latencies_ms.max()), 1) if scored else None},
        "deadline_ms": options.deadline_ms,
        "deadline_miss_rate": round(missed / expected, 4) if expected else 0.0,
        "throughput_windows_per_s": round(scored / wall_s, 2) if wall_s > 0 else 0.0,
        "cpu_seconds": round(sampler.cpu_seconds, 1),
        "peak_rss_mb": round(sampler.peak_rss_mb, 1),
        "states": listener.states,
        "machine": machine_description(),
    }


def format_result(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    return (
        f"\nbeds={r['beds']} duration={r['duration_s']:.0f}s hop={r['hop_s']}s window={r['window_s']}s\n"
        f"  windows: expected {r['windows_expected']}, scored {r['windows_scored']}, lost {r['windows_lost']} "
        f"(states {r['states']})\n"
        f"  latency ms: p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}  "
        f"(deadline {r['deadline_ms']:.0f} ms, miss rate {r['deadline_miss_rate']:.2%})\n"
        f"  throughput {r['throughput_windows_per_s']} windows/s, cpu {r['cpu_seconds']} s, "
        f"peak rss {r['peak_rss_mb']} MB\n  machine: {r['machine']}"
    )
