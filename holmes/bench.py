"""``holmes bench``: the whole system, embedded, against simulated beds; a WebSocket client plays the dashboard.

End-to-end latency of a window = the moment its score reaches the WebSocket client minus the acquisition time
of the window's last sample (the simulator's clock, which is the wall clock at speed 1).

Modes (``--mode``, the worker's ``HOLMES_EXEC_MODE``): ``batched`` (windows due together are batched across
beds), ``per-request`` (one window per executor call, so every model runs at batch size 1: HOLMES's one
request per patient per model, through the same executor, nothing else changed) and ``offline`` (windows are
scored in periodic batch jobs). All three serve the ensemble the selector picks for the benchmark's load at
start (``HOLMES_PLAN_BEDS``); only ``batched`` re-plans. ``--compare`` runs the three back to back.

Next to the measured latency the result carries the latency model's prediction for the ensemble in force at
the end of the run and the measured load (``predicted_ms``), and the executor's capacity: windows per second
of executor thread time (``capacity_windows_per_s``), the throughput one worker could sustain, and the same at
equal work (``full_capacity_windows_per_s``: a partial window, whose skipped members cost nothing, counts for
the share of its members that ran).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import platform
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from tqdm import tqdm

from holmes.procs import freeze_heap
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
    mode: str = "batched"
    aligned: bool = False
    offline_period_s: float = 30.0
    ensemble: str = ""
    #: a 2x burst: as many beds again join for the middle third of the run (bed ids ``burst-NNN``)
    burst: bool = False

    @property
    def burst_window_s(self) -> tuple[float, float]:
        """Seconds after the start when the burst beds begin and stop streaming."""
        return self.duration_s / 3.0, 2.0 * self.duration_s / 3.0

    @property
    def stagger_ticks(self) -> int:
        return 1 if self.aligned else max(1, round(self.hop_s / self.chunk_s))


class ScoreListener:
    """A WebSocket client on its own thread that stamps every score message on arrival."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.arrivals: dict[tuple[str, float], float] = {}
        #: per window, seconds: acquisition -> worker published -> api received -> api broadcast -> this client
        self.stages: dict[tuple[str, float], tuple[float, float, float, float]] = {}
        self.extras: dict[tuple[str, float], dict[str, Any]] = {}
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
                        end, scored = float(score["window_end_s"]), float(score.get("scored_at_s") or 0.0)
                        sent = float(msg.get("sent_at_s") or now)
                        received = float(score.get("received_at_s") or sent)
                        self.arrivals[key] = now - end
                        if scored > 0:
                            self.stages[key] = (scored - end, received - scored, sent - received, now - sent)
                        self.extras[key] = {"models": score.get("models") or [], **(score.get("extra") or {})}
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
        self._names: dict[int, str] = {}
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
                    if proc.pid not in self._names:
                        self._names[proc.pid] = _process_role(proc.cmdline())
            except psutil.Error:
                continue
        self.peak_rss_mb = max(self.peak_rss_mb, rss / 2**20)

    def cpu_by_name(self) -> dict[str, float]:
        """CPU seconds by role (bench, broker, worker, api, simulator)."""
        out: dict[str, float] = {}
        for pid, cpu in self._cpu.items():
            name = self._names.get(pid, "other")
            out[name] = round(out.get(name, 0.0) + cpu, 1)
        return out

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


def _process_role(cmdline: list[str]) -> str:
    for role in ("worker", "api", "simulate", "bench"):
        if role in cmdline[1:4] or (len(cmdline) > 3 and cmdline[3] == role):
            return "simulator" if role == "simulate" else role
    if any("tansu" in part for part in cmdline[:1]):
        return "broker"
    return "bench" if any(part.endswith("holmes") for part in cmdline[:2]) else "other"


def machine_description() -> str:
    return f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, " \
           f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.system()} {platform.release()}"


SHARED_MACHINE_CONTENTION = 2.0
"""``HOLMES_CPU_CONTENTION`` the bench gives its worker unless the environment sets one. The bench runs the
broker, the API, the simulator and its own client on the worker's machine, where every run measured CPU
work at 1.7-2.3x its idle cost; the worker's first plan, made before anything is measured, would otherwise
assume an idle machine and pick an ensemble that cannot keep up at 1,000 beds until the first re-plan."""


def first_plan_contention(environ: Mapping[str, str]) -> str:
    """The contention the bench's worker assumes until it measures one: the environment's, or
    :data:`SHARED_MACHINE_CONTENTION`."""
    return environ.get("HOLMES_CPU_CONTENTION") or str(SHARED_MACHINE_CONTENTION)


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
           "HOLMES_LOG_LEVEL": "warning", "HOLMES_EXEC_MODE": options.mode,
           "HOLMES_BUDGET_MS": str(options.deadline_ms), "HOLMES_PLAN_BEDS": str(options.beds),
           "HOLMES_PLAN_PHASES": str(options.stagger_ticks), "HOLMES_CPU_CONTENTION": first_plan_contention(os.environ),
           "HOLMES_OFFLINE_PERIOD_S": str(options.offline_period_s), "HOLMES_ENSEMBLE": options.ensemble}
    expected = options.beds * windows_expected(options.duration_s, options.window_s, options.hop_s)
    burst_from_s, burst_to_s = options.burst_window_s
    if options.burst:
        expected += options.beds * windows_expected(burst_to_s - burst_from_s, options.window_s, options.hop_s)
    sampler = ResourceSampler().start()
    print(f"bench: {options.mode}, {options.beds} beds x {options.duration_s:.0f} s, hop {options.hop_s} s, "
          f"window {options.window_s} s, {'aligned' if options.aligned else 'spread'} -> {expected} windows "
          f"expected; logs in {run_dir}", flush=True)
    with Stack(settings, run_dir, api_port=api_port, env=env, embedded=True) as stack:
        stack.start()
        listener = ScoreListener(f"ws://127.0.0.1:{api_port}/ws/scores").start()
        freeze_heap("bench")  # a collection's pause here would be counted as the stack's latency
        t_start = time.time()
        def simulate(name: str, duration_s: float, *extra: str) -> Any:
            return stack.spawn(name, [
                "simulate", "--beds", str(options.beds), "--duration", str(duration_s),
                "--source", options.source, "--chunk-s", str(options.chunk_s), "--quiet",
                "--stagger", str(options.stagger_ticks), *([] if options.aligned else ["--spread"]), *extra,
            ])

        sims = [simulate("simulator", options.duration_s)]
        with tqdm(total=expected, desc="windows scored", unit="win", mininterval=1.0) as bar:
            deadline = None
            while True:
                bar.update(len(listener.arrivals) - bar.n)
                if len(listener.arrivals) >= expected:
                    break
                if options.burst and len(sims) == 1 and time.time() >= t_start + burst_from_s:
                    sims.append(simulate("burst-simulator", burst_to_s - burst_from_s, "--bed-prefix", BURST_PREFIX,
                                         "--seed", "1"))
                if not any(sim.alive() for sim in sims) and (len(sims) == 2 or not options.burst):
                    if failed := [sim for sim in sims if sim.proc.returncode != 0]:
                        raise RuntimeError(f"simulator failed:\n{failed[0].tail()}")
                    drain_s = options.drain_s + (options.offline_period_s if options.mode == "offline" else 0.0)
                    deadline = deadline or time.time() + drain_s
                    if time.time() > deadline:
                        break
                time.sleep(0.2)
            bar.update(len(listener.arrivals) - bar.n)
        t_end = time.time()
        sampler.stop()
        listener.stop()
        plans = fetch_plans(api_port) if options.burst else []
    result = summarise(options, expected, listener, sampler, t_end - t_start)
    if options.burst:
        result["burst"] = burst_figures(options, listener, t_start, plans)
    result.update(worker_figures(options, run_dir / "worker" / "stats.json"))
    print(format_result(result))
    if options.burst:
        print(format_burst(result["burst"], options.deadline_ms))
    if options.json_path:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(result, indent=2))
        print(f"wrote {options.json_path}")
    return result


#: bed ids of the beds a 2x burst adds
BURST_PREFIX = "burst-"


def fetch_plans(api_port: int) -> list[dict[str, Any]]:
    """The plans the worker published, oldest first, as the API stored them."""
    import urllib.error
    import urllib.request

    try:
        url = f"http://127.0.0.1:{api_port}/api/ensemble/plans?limit=200"
        with urllib.request.urlopen(url, timeout=10.0) as page:  # noqa: S310 (our own API on localhost)
            return list(reversed(json.loads(page.read())["items"]))
    except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
        log.warning("plans not read from the API: %s", exc)
        return []


def burst_figures(options: BenchOptions, listener: ScoreListener, t_start: float,
                  plans: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency before, during and after the burst, and the plans in force.

    Phases go by window end time, bounded by the burst beds' own windows: ``during`` from the first to the last
    burst-bed window (both sets of beds stream), ``before`` until the first, ``after`` from two hops past the
    last. Every bed's windows count in the phase they fall in.
    """
    burst_ends = [end for bed, end in listener.arrivals if bed.startswith(BURST_PREFIX)]
    first, last = (min(burst_ends), max(burst_ends)) if burst_ends else (math.inf, math.inf)
    bounds = {"before": (-math.inf, first), "during": (first, last + 1e-3),
              "after": (last + 2 * options.hop_s, math.inf)}
    phases: dict[str, Any] = {}
    for name, (lo, hi) in bounds.items():
        ms = np.array([lat for (bed, end), lat in listener.arrivals.items() if lo <= end < hi]) * 1000.0
        phases[name] = {
            "windows": int(ms.size),
            "beds": len({bed for bed, end in listener.arrivals if lo <= end < hi}),
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if ms.size else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if ms.size else None,
            "max_ms": round(float(ms.max()), 1) if ms.size else None,
            "over_budget": int((ms > options.deadline_ms).sum()),
        }
    depths = [int(e["queue_depth"]) for e in listener.extras.values() if isinstance(e.get("queue_depth"), int)]
    return {
        "beds_before": options.beds, "beds_during": 2 * options.beds,
        "burst_from_s": round(first - t_start - options.window_s, 1) if burst_ends else None,
        "burst_to_s": round(last - t_start, 1) if burst_ends else None,
        "phases": phases,
        "max_queue_depth": max(depths) if depths else None,
        "plans": [{"at_s": round(p["at_s"] - t_start, 1), "plan_id": p["plan_id"], "reason": p["reason"],
                   "members": p["members"], "beds": p["beds"], "predicted_p99_ms": p["predicted_p99_ms"],
                   "measured_p99_ms": p.get("measured_p99_ms")} for p in plans],
    }


def format_burst(b: dict[str, Any], budget_ms: float) -> str:
    lines = [f"  2x burst: {b['beds_before']} beds, {b['beds_during']} from {b['burst_from_s']} s to "
             f"{b['burst_to_s']} s; queue depth max {b['max_queue_depth']}"]
    for name, ph in b["phases"].items():
        lines.append(f"    {name:<7} {ph['windows']:>6} windows ({ph['beds']} beds)  p50 {ph['p50_ms']}  "
                     f"p99 {ph['p99_ms']}  max {ph['max_ms']} ms  over the {budget_ms:.0f} ms budget: "
                     f"{ph['over_budget']}")
    for p in b["plans"]:
        lines.append(f"    plan {p['plan_id']} at {p['at_s']:>6.1f} s: {len(p['members'])} members for {p['beds']} "
                     f"beds, predicted p99 {p['predicted_p99_ms']:.0f} ms ({p['reason']})")
    return "\n".join(lines)


def worker_figures(options: BenchOptions, stats_path: Path) -> dict[str, Any]:
    """The worker's own figures (its stats file) and the latency model's prediction for what it served."""
    from dataclasses import replace

    from ensemble.latency import Costs, LatencyModel, Load, Transport, measure_feature_costs
    from models.zoo import load_zoo

    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, ValueError):
        return {"worker": None, "predicted_ms": None}
    executor = stats.get("executor", {})
    members = stats.get("plan", {}).get("members", [])
    runs = [*members, *stats.get("plan", {}).get("fallback", [])]  # what ran: a plan's one-lead fallback too
    busy = float(executor.get("busy_s") or 0.0)
    out: dict[str, Any] = {
        "worker": stats,
        "ensemble": members,
        "replans": stats.get("replans", 0),
        "partial": stats.get("partial", 0),
        "capacity_windows_per_s": round(executor.get("items", 0) / busy, 1) if busy > 0 else None,
        # at equal work: windows whose members all ran (a partial window counts for the share that ran)
        "full_capacity_windows_per_s": (
            round(executor.get("items", 0) * stats["member_runs"] / stats["member_slots"] / busy, 1)
            if busy > 0 and stats.get("member_slots") else None),
        "predicted_ms": None,
    }
    if members and options.mode != "offline":
        zoo = [m for m in load_zoo() if m.model_id in runs]
        batch = 1 if options.mode == "per-request" else 256
        # the feature costs the worker timed at its start: its contention is measured against those (timing
        # them again here, on a machine that is now idle, mixed two baselines)
        costs = stats.get("feature_costs_ms") or {}
        fixed_ms, per_window_ms = ((float(costs["fixed"]), float(costs["per_window"])) if costs
                                   else measure_feature_costs())
        model = LatencyModel.from_models(zoo, Costs(feature_ms=per_window_ms, feature_fixed_ms=fixed_ms,
                                                    max_batch=batch))
        # the profiles as the worker timed them at its start (its slowdowns are measured against those)
        model = model.rescaled({m: (float(a), float(b)) for m, (a, b) in (stats.get("profile_scales") or {}).items()})
        # the transport the worker measured last (upstream) with the API's fetch wait (downstream)
        measured = stats.get("transport")
        if measured:
            model.transport = Transport(tuple(measured["upstream_ms"]), float(measured["downstream_ms"]),
                                        float(measured["downstream_wait_ms"]))
            out["upstream_ms"] = {"p50": measured["upstream_ms"][len(measured["upstream_ms"]) // 2],
                                  "top": measured["upstream_ms"][-1]}
        # the bench's load, bunched as the worker measured it (the simulator's send slots)
        load = Load(options.beds, options.hop_s, options.chunk_s, phases=options.stagger_ticks,
                    spread_s=0.0 if options.aligned else options.chunk_s,
                    bunch_s=0.0 if options.aligned else float((stats.get("last_load") or {}).get("bunch_s") or 0.0))
        out["predicted_idle_ms"] = model.predict(runs, load).as_dict()
        # the worker's measured contention and per-model slowdowns: the inputs the planner itself uses
        model.contention = float(stats.get("contention") or 1.0)
        model.jitter = tuple(stats.get("jitter") or (1.0,))
        if stats.get("chunk_ms"):  # the event loop's measured time per chunk, at that contention
            model.costs = replace(model.costs, chunk_ms=float(stats["chunk_ms"]) / model.contention)
        if executor.get("deliver_ms"):  # and per published score
            model.costs = replace(model.costs, deliver_ms=float(executor["deliver_ms"]) / model.contention)
        model.slowdown = {m: float(r) for m, r in (stats.get("slowdown") or {}).items() if m in runs}
        out["predicted_ms"] = model.predict(runs, load).as_dict()
        out["contention"] = round(model.contention, 2)
    return out


def summarise(options: BenchOptions, expected: int, listener: ScoreListener, sampler: ResourceSampler,
              wall_s: float) -> dict[str, Any]:
    latencies_ms = np.array(list(listener.arrivals.values()), dtype=float) * 1000.0
    scored = len(latencies_ms)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(latencies_ms, q)), 1) if scored else None

    missed = int((latencies_ms > options.deadline_ms).sum()) + max(0, expected - scored)
    return {
        "mode": options.mode,
        "phases": "aligned" if options.aligned else "spread",
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
        "stages_ms": stage_percentiles(listener.stages),
        "worker_stages_ms": {
            k: {"p50": round(float(np.percentile(v, 50)), 1), "p99": round(float(np.percentile(v, 99)), 1)}
            for k in WORKER_STAGES
            if (v := [float(e[k]) for e in listener.extras.values() if isinstance(e.get(k), int | float)])
        },
        "cpu_seconds": round(sampler.cpu_seconds, 1),
        "cpu_seconds_by_process": sampler.cpu_by_name(),
        "peak_rss_mb": round(sampler.peak_rss_mb, 1),
        "states": listener.states,
        "timeline": timeline(listener, options.hop_s),
        "by_plan": by_plan(listener),
        "machine": machine_description(),
    }


def by_plan(listener: ScoreListener) -> list[dict[str, Any]]:
    """Measured latency of the windows scored under each plan, next to the p99 that plan was predicted to have
    when it went into force (``extra.predicted_ms``): the prediction for an ensemble set against that ensemble's
    own windows, where the run-wide p99 mixes plans."""
    groups: dict[int, list[float]] = {}
    predicted: dict[int, float] = {}
    members: dict[int, int] = {}
    for key, latency_s in listener.arrivals.items():
        extra = listener.extras.get(key) or {}
        plan_id = extra.get("plan_id")
        if not isinstance(plan_id, int):
            continue
        groups.setdefault(plan_id, []).append(latency_s * 1000.0)
        if isinstance(extra.get("predicted_ms"), int | float):
            predicted[plan_id] = float(extra["predicted_ms"])
        members[plan_id] = max(members.get(plan_id, 0), len(extra.get("models") or []))
    out = []
    for plan_id in sorted(groups):
        ms = np.asarray(groups[plan_id])
        p99 = float(np.percentile(ms, 99))
        pred = predicted.get(plan_id)
        out.append({"plan_id": plan_id, "windows": int(ms.size), "members": members[plan_id],
                    "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(p99, 1),
                    "predicted_p99_ms": pred, "measured_over_predicted": round(p99 / pred, 2) if pred else None})
    return out


def timeline(listener: ScoreListener, hop_s: float) -> list[dict[str, float]]:
    """Latency over the run: p50/p99 of the windows ending in each hop, from the first window's end."""
    if not listener.arrivals:
        return []
    ends = np.array([end for _, end in listener.arrivals])
    ms = np.array(list(listener.arrivals.values())) * 1000.0
    slot = np.floor((ends - ends.min()) / hop_s).astype(int)
    out = []
    for k in range(int(slot.max()) + 1):
        sel = ms[slot == k]
        if sel.size:
            out.append({"t_s": round(k * hop_s, 1), "windows": int(sel.size),
                        "p50_ms": round(float(np.percentile(sel, 50)), 1),
                        "p99_ms": round(float(np.percentile(sel, 99)), 1)})
    return out


STAGES = ("worker", "kafka_to_api", "api", "websocket")
WORKER_STAGES = ("ingest_ms", "queue_ms", "exec_ms", "batch")


def stage_percentiles(stages: dict[tuple[str, float], tuple[float, ...]]) -> dict[str, dict[str, float]]:
    """p50/p99 ms of each stage of the trip: acquisition -> worker published (``worker``: Kafka in, windowing,
    queue, features, models) -> api received (``kafka_to_api``) -> broadcast (``api``: database write) ->
    client (``websocket``)."""
    if not stages:
        return {}
    values = np.array(list(stages.values()), dtype=float) * 1000.0
    return {name: {"p50": round(float(np.percentile(values[:, i], 50)), 1),
                   "p99": round(float(np.percentile(values[:, i], 99)), 1)}
            for i, name in enumerate(STAGES)}


def format_result(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    stages = ", ".join(f"{k} {v['p50']}/{v['p99']}" for k, v in r.get("stages_ms", {}).items())
    pred = r.get("predicted_ms") or {}
    idle = r.get("predicted_idle_ms") or {}
    predicted = (f"  predicted ms: p50 {pred['p50_ms']}  p99 {pred['p99_ms']} (measured/predicted p99 "
                 f"{lat['p99'] / pred['p99_ms']:.2f}; contention {r.get('contention')}x, on an idle machine "
                 f"p99 {idle.get('p99_ms')})\n" if pred.get("p99_ms") and lat["p99"] else "")
    return (
        f"\n{r['mode']}: beds={r['beds']} ({r['phases']}) duration={r['duration_s']:.0f}s hop={r['hop_s']}s "
        f"window={r['window_s']}s\n"
        f"  ensemble: {', '.join(r.get('ensemble') or []) or '?'} (re-plans {r.get('replans', 0)})\n"
        f"  windows: expected {r['windows_expected']}, scored {r['windows_scored']}, lost {r['windows_lost']} "
        f"(states {r['states']}, partial {r.get('partial', 0)})\n"
        f"  latency ms: p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}  "
        f"(deadline {r['deadline_ms']:.0f} ms, miss rate {r['deadline_miss_rate']:.2%})\n"
        f"{predicted}"
        f"  stages ms (p50/p99): {stages}\n"
        f"  in the worker (p50/p99): "
        + ", ".join(f"{k} {v['p50']}/{v['p99']}" for k, v in r.get("worker_stages_ms", {}).items()) + "\n"
        f"  throughput {r['throughput_windows_per_s']} windows/s, executor capacity "
        f"{r.get('capacity_windows_per_s')} windows/s ({r.get('full_capacity_windows_per_s')} at full ensemble "
        f"work)\n"
        f"  cpu {r['cpu_seconds']} s {r.get('cpu_seconds_by_process', {})}, peak rss {r['peak_rss_mb']} MB\n"
        + "".join(f"  plan {p['plan_id']} ({p['members']} members): {p['windows']} windows, p50/p99 {p['p50_ms']:.0f}/"
                  f"{p['p99_ms']:.0f} ms, predicted p99 {p['predicted_p99_ms']} ms when it went into force "
                  f"(measured/predicted {p['measured_over_predicted']})\n" for p in r.get("by_plan", [])) +
        "  p99 ms by hop of window end: "
        + " ".join(f"{t['t_s']:.0f}s:{t['p99_ms']:.0f}" for t in r.get("timeline", [])) + "\n"
        f"  machine: {r['machine']}"
    )


def run_compare(settings: Settings, options: BenchOptions) -> list[dict[str, Any]]:
    """Batched, per-request and offline back to back on the same load; prints the ratios."""
    from dataclasses import replace

    # One ensemble for all three modes, the one a batched worker would start with at this load, pinned
    # (HOLMES_ENSEMBLE): only the execution differs.
    from holmes.serving import build_planner, first_load
    from holmes.settings import WorkerSettings
    from models.zoo import load_zoo

    plan_settings = WorkerSettings(plan_beds=options.beds, plan_phases=options.stagger_ticks,
                                   budget_ms=options.deadline_ms, hop_s=options.hop_s, window_s=options.window_s)
    members = options.ensemble or ",".join(build_planner(load_zoo(), plan_settings).start(
        first_load(plan_settings)).member_ids)
    print(f"compare: every mode serves {members}", flush=True)
    results = [run_bench(settings, replace(options, mode=mode, json_path=None, ensemble=members))
               for mode in ("batched", "per-request", "offline")]
    by_mode = {r["mode"]: r for r in results}
    b, p, o = by_mode["batched"], by_mode["per-request"], by_mode["offline"]

    def ratio(x: float | None, y: float | None) -> float | None:
        return round(x / y, 2) if x and y else None

    ratios = {
        "capacity_batched_over_per_request": ratio(b.get("capacity_windows_per_s"), p.get("capacity_windows_per_s")),
        "full_capacity_batched_over_per_request": ratio(b.get("full_capacity_windows_per_s"),
                                                        p.get("full_capacity_windows_per_s")),
        "p99_per_request_over_batched": ratio(p["latency_ms"]["p99"], b["latency_ms"]["p99"]),
        "p99_offline_over_batched": ratio(o["latency_ms"]["p99"], b["latency_ms"]["p99"]),
        "p50_offline_over_batched": ratio(o["latency_ms"]["p50"], b["latency_ms"]["p50"]),
    }
    print(f"\ncompare at {options.beds} beds ({b['phases']}):")
    print(f"  {'mode':<12} {'p50 ms':>9} {'p99 ms':>9} {'lost':>5} {'partial':>8} {'capacity win/s':>15} "
          f"{'at full work':>13}")
    for r in results:
        print(f"  {r['mode']:<12} {r['latency_ms']['p50']!s:>9} {r['latency_ms']['p99']!s:>9} "
              f"{r['windows_lost']:>5} {r.get('partial', 0)!s:>8} {r.get('capacity_windows_per_s')!s:>15} "
              f"{r.get('full_capacity_windows_per_s')!s:>13}")
    for k, v in ratios.items():
        print(f"  {k}: {v}")
    if options.json_path:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps({"compare": ratios, "runs": results}, indent=2))
        print(f"wrote {options.json_path}")
    return results


def run_sweep(
    settings: Settings, options: BenchOptions, beds: list[int], png_path: Path | None
) -> list[dict[str, Any]]:
    """One benchmark per bed count (same options otherwise), a summary table, and latency vs beds as a PNG."""
    from dataclasses import replace

    results = []
    for n in beds:
        path = options.json_path.with_name(f"{options.json_path.stem}-{n}.json") if options.json_path else None
        results.append(run_bench(settings, replace(options, beds=n, json_path=path)))
    print(f"\nsweep ({options.mode}, {results[0]['phases']}):")
    print(f"  {'beds':>5} {'p50 ms':>8} {'p99 ms':>8} {'pred p99':>9} {'lost':>5} {'partial':>8} {'miss':>7}  ensemble")
    for r in results:
        pred = (r.get("predicted_ms") or {}).get("p99_ms")
        print(f"  {r['beds']:>5} {r['latency_ms']['p50']!s:>8} {r['latency_ms']['p99']!s:>8} {pred!s:>9} "
              f"{r['windows_lost']:>5} {r.get('partial', 0)!s:>8} {r['deadline_miss_rate']:>7.2%}  "
              f"{len(r.get('ensemble') or [])} models")
    if png_path is not None:
        plot_sweep(results, png_path)
        print(f"wrote {png_path}")
    return results


def plot_sweep(results: list[dict[str, Any]], path: Path) -> None:
    """Measured p50/p99 and predicted p99 against beds, with the deadline, and ensemble size on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    beds = [r["beds"] for r in results]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(beds, [r["latency_ms"]["p99"] for r in results], "o-", color="tab:red", label="measured p99")
    ax.plot(beds, [r["latency_ms"]["p50"] for r in results], "o-", color="tab:blue", label="measured p50")
    pred = [(r.get("predicted_ms") or {}).get("p99_ms") for r in results]
    if any(p is not None for p in pred):
        ax.plot(beds, [p if p is not None else float("nan") for p in pred], "s--", color="tab:red", alpha=0.5,
                label="predicted p99")
    ax.axhline(results[0]["deadline_ms"], color="grey", linestyle=":", label="budget")
    ax.set_xscale("log")
    ax.set_xticks(beds, [str(b) for b in beds])
    ax.set_xlabel("beds (hop 5 s, 250 Hz, one worker)")
    ax.set_ylabel("end-to-end latency, ms")
    size = ax.twinx()
    size.bar(beds, [len(r.get("ensemble") or []) for r in results], width=[b * 0.15 for b in beds], alpha=0.15,
             color="tab:green")
    size.set_ylabel("ensemble members at the end of the run", color="tab:green")
    ax.set_zorder(size.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"holmes bench, {results[0]['mode']}, beds {results[0]['phases']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
