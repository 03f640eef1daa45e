"""The ``holmes`` command line: one entry point for every process kind."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from holmes.settings import ApiSettings, CommonSettings, Settings, WorkerSettings

log = logging.getLogger("holmes")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("kafka", "aiokafka", "faust", "mode", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def cmd_broker(args: argparse.Namespace) -> int:
    """Run the embedded broker (or check the configured one) and create the topics."""
    from ingest.broker import EmbeddedBroker
    from ingest.topics import ensure_topics

    settings = CommonSettings()
    if settings.kafka_bootstrap:
        ensure_topics(settings.kafka_bootstrap, settings.topics().all())
        print(f"HOLMES_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} is set: using that cluster, topics are in place; "
              "no embedded broker started")
        return 0
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(port=args.port, log_path=settings.state_dir / "broker.log").start()
    try:
        ensure_topics(broker.bootstrap, settings.topics().all())
        print(f"embedded Kafka-protocol broker (Tansu, in memory) on {broker.bootstrap}")
        print(f"export HOLMES_KAFKA_BOOTSTRAP={broker.bootstrap}   # then run holmes worker / api / simulate")
        _wait_for_signal()
    finally:
        broker.stop()
    return 0


def _wait_for_signal() -> None:
    stop = False

    def handler(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, handler)
    try:
        while not stop:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the windowing and scoring worker."""
    import features
    from ensemble.feature_process import FeatureProcess
    from ensemble.scoring import WindowScorer
    from holmes.procs import freeze_heap
    from holmes.serving import build_planner, first_load, resolve_device
    from ingest.worker import WorkerConfig, run_worker, warm_plan
    from models.zoo import load_zoo

    overrides = {k: v for k, v in {"window_s": args.window_s, "hop_s": args.hop_s}.items() if v is not None}
    settings = WorkerSettings(**overrides)
    if not settings.kafka_bootstrap:
        print("holmes worker needs HOLMES_KAFKA_BOOTSTRAP (or use `holmes up`)", file=sys.stderr)
        return 2
    if settings.window_s not in (10.0, 30.0):
        print(f"window_s must be 10 or 30, not {settings.window_s}", file=sys.stderr)
        return 2
    try:
        device = resolve_device(settings.device)
    except ValueError as exc:
        print(f"holmes worker: {exc}", file=sys.stderr)
        return 2
    import torch

    # One inference thread: on 2 shared cores, two threads stalled 10-15 ms at small batches (models/ZOO.md).
    torch.set_num_threads(1)
    zoo = load_zoo(settings.model_dir, device=device)
    log.info("models on %s (HOLMES_DEVICE=%s)", device, settings.device)
    # feature extraction and searches run in child processes: neither takes the executor's GIL
    extract = FeatureProcess() if settings.feature_process else features.extract_batch
    planner = build_planner(zoo, settings, search_in_process=True, extract=extract)
    plan = planner.start(first_load(settings))
    warm_plan(plan, settings.max_batch)
    # The executor thread and the event loop share the GIL: hand it over every 1 ms rather than 5 ms, or
    # each torch call that gives it up may wait up to 5 ms to get it back.
    sys.setswitchinterval(0.001)
    # deadline checks predict with the assumed contention until the worker measures one (build_app updates it)
    scorer = WindowScorer(plan, latency=planner.model(), extract=extract)
    log.info("serving %s (%s); fallback %s", ", ".join(plan.member_ids), plan.reason,
             ", ".join(m.model_id for m in plan.fallback) or "none")
    config = WorkerConfig(
        kafka_bootstrap=settings.kafka_bootstrap,
        topics=settings.topics(),
        app_id=f"{settings.topic_prefix}-worker",
        window_s=settings.window_s,
        hop_s=settings.hop_s,
        sample_rate_hz=settings.sample_rate_hz,
        max_reorder_chunks=settings.max_reorder_chunks,
        max_beds=settings.max_beds,
        bed_evict_s=settings.bed_evict_s,
        max_future_s=settings.max_future_s,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        ready_file=Path(args.ready_file) if args.ready_file else None,
        datadir=settings.state_dir / "worker",
        budget_ms=settings.budget_ms,
        exec_mode=settings.exec_mode,
        offline_period_s=settings.offline_period_s,
        max_batch=settings.max_batch,
        replan_interval_s=settings.replan_interval_s,
    )
    freeze_heap("worker")
    run_worker(config, scorer, loglevel=settings.log_level, planner=planner)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    """Run the FastAPI service (REST, WebSocket, live page)."""
    import uvicorn

    from api.app import create_app
    from api.config import ApiConfig
    from api.errors import ConfigError
    from holmes.cli_models import registration_config
    from holmes.procs import freeze_heap

    settings = ApiSettings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        config = ApiConfig(
            database_url=settings.resolved_database_url(),
            kafka_bootstrap=settings.kafka_bootstrap,
            scores_topic=settings.topics().scores.name,
            deadletter_topic=settings.topics().deadletter.name,
            plans_topic=settings.topics().plans.name,
            consumer_group=f"{settings.topic_prefix}-api",
            fetch_max_wait_ms=settings.api_fetch_max_wait_ms,
            env=settings.env,
            admin_token=settings.admin_token,
            anonymous_read=settings.api_anonymous_read,
            session_ttl_s=settings.session_ttl_s,
            hop_s=settings.hop_s,
            alert_threshold=settings.alert_threshold,
            alert_clear_threshold=settings.alert_clear_threshold,
            alert_raise_windows=settings.alert_raise_windows,
            alert_clear_windows=settings.alert_clear_windows,
            score_retention_s=settings.score_retention_s,
            cors_origins=settings.cors_origin_list(),
        )
    except ConfigError as exc:
        print(f"holmes api: {exc}", file=sys.stderr)
        return 2
    port = args.port if args.port is not None else settings.api_port
    # No per-message deflate on the WebSocket: every score would be compressed once per client on the API's
    # one core (a fifth of its CPU at 1,000 beds); the page runs on the hospital network.
    app = create_app(config, registration_config(settings))
    freeze_heap("api")
    uvicorn.run(app, host=args.host or settings.api_host, port=port, log_level=settings.log_level, access_log=False,
                ws_per_message_deflate=False)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Replay ECG for N beds into the waveform topic."""
    from holmes.procs import freeze_heap
    from simulator.events import parse_event
    from simulator.kafka import kafka_sender, make_producer
    from simulator.replay import Simulator, SimulatorConfig

    settings = CommonSettings()
    if not settings.kafka_bootstrap:
        print("holmes simulate needs HOLMES_KAFKA_BOOTSTRAP (or use `holmes up --beds N`)", file=sys.stderr)
        return 2
    try:
        events = tuple(parse_event(e) for e in args.event)
    except ValueError as exc:
        print(f"bad --event: {exc}", file=sys.stderr)
        return 2
    config = SimulatorConfig(
        n_beds=args.beds, duration_s=args.duration, source=args.source, chunk_s=args.chunk_s,
        speed=args.speed, seed=args.seed, data_dir=settings.data_dir, events=events,
        stagger_ticks=args.stagger, spread_within_tick=args.spread, bed_id_prefix=args.bed_prefix,
        slot_s=args.slot_s,
    )
    producer = make_producer(settings.kafka_bootstrap)
    try:
        simulator = Simulator(config, kafka_sender(producer, settings.topics().waveforms.name))
        freeze_heap("simulator")
        stats = simulator.run(progress=not args.quiet)
    finally:
        producer.flush()
        producer.close()
    print(stats)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Everything on one machine: broker, worker, API and (optionally) simulated beds."""
    from holmes.supervisor import run_up

    return run_up(Settings(), beds=args.beds, source=args.source, port=args.port)


def _bed_counts(text: str) -> list[int]:
    """``64`` or ``16,64,256``: bed counts >= 1."""
    try:
        beds = [int(b) for b in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or a comma-separated list of numbers, not {text!r}") from None
    if not beds or min(beds) < 1:
        raise argparse.ArgumentTypeError(f"bed counts must be >= 1, got {text!r}")
    return beds


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the whole system embedded against N simulated beds and write the benchmark JSON."""
    from holmes.bench import BenchOptions, run_bench, run_compare, run_sweep

    beds: list[int] = args.beds
    if len(beds) > 1 and args.compare:
        print("--compare takes one bed count", file=sys.stderr)
        return 2
    options = BenchOptions(
        beds=beds[0], duration_s=args.duration, hop_s=args.hop, window_s=args.window,
        source=args.source, chunk_s=args.chunk_s, deadline_ms=args.deadline_ms,
        json_path=Path(args.json) if args.json else None, mode=args.mode, aligned=args.aligned,
        offline_period_s=args.offline_period, burst=args.burst, ensemble=args.ensemble,
    )
    if args.burst and (args.compare or len(beds) > 1):
        print("--burst takes one bed count and one mode", file=sys.stderr)
        return 2
    if args.compare:
        results = run_compare(Settings(), options)
        return 0 if all(r["windows_lost"] == 0 for r in results) else 1
    if len(beds) > 1:
        results = run_sweep(Settings(), options, beds, Path(args.png) if args.png else None)
        return 0 if all(r["windows_lost"] == 0 for r in results) else 1
    result = run_bench(Settings(), options)
    return 0 if result["windows_lost"] == 0 else 1


def cmd_scaleout(args: argparse.Namespace) -> int:
    """One worker, then two in one consumer group, on the same backlog: bed split, losses, throughput ratio."""
    from holmes.scaleout import ScaleoutOptions, run_scaleout

    options = ScaleoutOptions(beds=args.beds, duration_s=args.duration, partitions=args.partitions,
                              source=args.source, json_path=Path(args.json) if args.json else None)
    result = run_scaleout(Settings(), options)
    return 0 if all(r["windows_lost"] == 0 for r in result["runs"]) else 1


def cmd_fuzz(args: argparse.Namespace) -> int:
    """Stream real beds with hostile messages mixed in; exit 1 if a bad message or a valid window was lost."""
    from holmes.fuzz import FuzzOptions, run_fuzz

    if args.messages < 1 or args.beds < 1 or args.duration <= 0 or args.speed <= 0:
        print("--messages and --beds must be >= 1, --duration and --speed > 0", file=sys.stderr)
        return 2
    options = FuzzOptions(messages=args.messages, beds=args.beds, duration_s=args.duration, seed=args.seed,
                          speed=args.speed, source=args.source, json_path=Path(args.json) if args.json else None,
                          progress=not args.quiet)
    return 0 if run_fuzz(Settings(), options)["ok"] else 1


def cmd_train(args: argparse.Namespace) -> int:
    """Rebuild the whole model zoo (and the RR random-forest baseline) from the shared data, from a seed."""
    from models.train_zoo import main as train_main

    settings = CommonSettings()
    argv = ["--data-dir", str(settings.data_dir), "--seed", str(args.seed)]
    if args.out:
        argv += ["--out", args.out]
    if args.only:
        argv += ["--only", *args.only]
    if args.table_only:
        argv.append("--table-only")
    return train_main(argv)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score every record of a PhysioNet-format folder with the ensemble a worker would serve at N beds."""
    import torch

    from ensemble.latency import Load
    from ensemble.scoring import ServingPlan, WindowScorer
    from holmes.serving import build_planner, describe_plan, first_load
    from models.errors import ModelError
    from models.evaluate import evaluate_folder, infer_format
    from models.zoo import load_zoo

    overrides: dict[str, object] = {"window_s": args.window_s} if args.window_s is not None else {}
    base = WorkerSettings(**overrides)
    if base.window_s not in (10.0, 30.0):
        print(f"window_s must be 10 or 30, not {base.window_s}", file=sys.stderr)
        return 2
    if args.beds < 1:
        print(f"--beds must be at least 1, not {args.beds}", file=sys.stderr)
        return 2
    # The worker's first plan at --beds beds; windows due in one tick per hop (--aligned, the worst case) or
    # spread over the hop's ticks, as monitors switched on at different moments are (holmes bench's default).
    phases = 1 if args.aligned else Load(args.beds, base.hop_s).ticks_per_hop
    settings = base.model_copy(update={"plan_beds": args.beds, "plan_phases": phases,
                                       **({"max_members": 1} if args.single else {})})
    folder = Path(args.data)
    json_path = Path(args.json)
    png_path = Path(args.png) if args.png else json_path.with_suffix(".png")
    torch.set_num_threads(1)  # as the worker; evaluation shares the machine's cores
    zoo = load_zoo(settings.model_dir)
    planner = build_planner(zoo, settings)
    load = first_load(settings)
    plan = planner.start(load)
    mode = "single" if args.single else "ensemble"
    if args.model:
        chosen = [m for m in zoo if args.model in (m.model_id, m.name)]
        if len(chosen) != 1:
            print(f"--model {args.model}: {len(chosen)} zoo models match ({', '.join(m.model_id for m in zoo)})",
                  file=sys.stderr)
            return 2
        plan, mode = ServingPlan.of(chosen, budget_ms=settings.budget_ms, reason=f"--model {args.model}"), "model"
    log.info("evaluating %s with %s (%s)", folder, ", ".join(plan.member_ids), plan.reason)
    try:
        result = evaluate_folder(
            folder, args.format or infer_format(folder), WindowScorer(plan), json_path, png_path,
            window_s=settings.window_s, split=None if args.split == "all" else args.split,
            ensemble=describe_plan(planner, plan, load, mode), recalibrate=not args.no_recalibrate,
            progress=not args.quiet,
        )
    except ModelError as exc:
        print(f"holmes evaluate: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: result[k] for k in ("records", "scored", "unscorable", "roc_auc", "pr_auc",
                                            "sens_at_spec95", "ece", "models")}, indent=2))
    print(f"wrote {json_path} and {png_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="holmes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="start everything on embedded defaults and print the dashboard URL")
    p.add_argument("--beds", type=int, default=8, help="simulated beds to start with (0 = none)")
    p.add_argument("--source", choices=["mitdb", "cinc2017", "synthetic"], default="mitdb")
    p.add_argument("--port", type=int, default=None, help="dashboard port (default HOLMES_API_PORT, 8000)")
    p.set_defaults(fn=cmd_up)

    p = sub.add_parser("broker", help="run the embedded Kafka-protocol broker and create the topics")
    p.add_argument("--port", type=int, default=None, help="loopback port (default: a free one)")
    p.set_defaults(fn=cmd_broker)

    p = sub.add_parser("worker", help="run the windowing/scoring worker (needs HOLMES_KAFKA_BOOTSTRAP)")
    p.add_argument("--window-s", type=float, default=None, help="10 or 30 (default HOLMES_WINDOW_S)")
    p.add_argument("--hop-s", type=float, default=None)
    p.add_argument("--ready-file", default=None, help="touched once partitions are assigned")
    p.set_defaults(fn=cmd_worker)

    p = sub.add_parser("api", help="run the API and live page (needs HOLMES_KAFKA_BOOTSTRAP for live scores)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(fn=cmd_api)

    p = sub.add_parser("simulate", help="replay real ECG for N beds into the waveform topic")
    p.add_argument("--beds", type=int, required=True)
    p.add_argument("--duration", type=float, required=True, help="simulated seconds")
    p.add_argument("--source", choices=["mitdb", "cinc2017", "synthetic"], default="mitdb")
    p.add_argument("--speed", type=float, default=1.0, help="1 = real time, 2 = twice as fast")
    p.add_argument("--chunk-s", type=float, default=1.0, help="chunk length, 0.25 to 1 s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--event", action="append", default=[],
                   help="inject KIND@BED:START+DURATION, KIND one of lead-off, noise, drop, duplicate, "
                        "reorder, af (e.g. lead-off@bed-003:20+10); repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--bed-prefix", default="bed-", help="bed ids are PREFIX001, PREFIX002, ... (default bed-)")
    p.add_argument("--stagger", type=int, default=1, metavar="TICKS",
                   help="bed i starts i %% TICKS chunks late, so beds' windows fall due in different ticks "
                        "(hop/chunk = spread evenly; 1 = all in step)")
    p.add_argument("--spread", action="store_true",
                   help="each bed's clock also runs its own fraction of a chunk late: chunks go out spread over "
                        "each tick instead of all at its start")
    p.add_argument("--slot-s", type=float, default=0.1, metavar="S",
                   help="with --spread, chunks whose acquisition ends within the same S seconds are sent together "
                        "at the end of that slot: never before their last sample, less than S later "
                        "(0 = each bed at its own moment; at most 0.25)")
    p.set_defaults(fn=cmd_simulate)

    p = sub.add_parser("bench", help="end-to-end benchmark: beds -> broker -> worker -> API -> WebSocket")
    p.add_argument("--beds", required=True, type=_bed_counts,
                   help="beds, or a comma-separated list for a sweep (e.g. 16,64,256,1000)")
    p.add_argument("--png", default=None, help="sweep: latency vs beds plot")
    p.add_argument("--duration", type=float, required=True, help="simulated seconds of streaming")
    p.add_argument("--hop", type=float, default=5.0)
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--source", choices=["mitdb", "cinc2017", "synthetic"], default="mitdb")
    p.add_argument("--chunk-s", type=float, default=1.0)
    p.add_argument("--deadline-ms", type=float, default=1000.0,
                   help="end-to-end budget a window must meet (the worker's HOLMES_BUDGET_MS)")
    p.add_argument("--mode", choices=["batched", "per-request", "offline"], default="batched",
                   help="batched across beds (default); one window per model call (HOLMES); periodic batch jobs")
    p.add_argument("--compare", action="store_true",
                   help="run batched, per-request and offline back to back and print the ratios")
    p.add_argument("--aligned", action="store_true",
                   help="every bed's windows fall due in the same tick (worst case); default: beds spread "
                        "over the hop, as monitors switched on at different moments are")
    p.add_argument("--offline-period", type=float, default=30.0, help="offline mode: seconds between batch jobs")
    p.add_argument("--burst", action="store_true",
                   help="2x burst: as many beds again join for the middle third of the run; prints latency before, "
                        "during and after, and the plans in force")
    p.add_argument("--ensemble", default="", metavar="IDS",
                   help="comma-separated model ids to serve whatever the load (HOLMES_ENSEMBLE); default: the "
                        "planner chooses, and --compare pins the plan a batched worker starts with")
    p.add_argument("--json", default=None, help="write the result here (--compare: one file, all modes)")
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("scaleout", help="one worker vs two in one consumer group: bed split, losses, throughput")
    p.add_argument("--beds", type=int, required=True)
    p.add_argument("--duration", type=float, required=True, help="simulated seconds of backlog per bed")
    p.add_argument("--partitions", type=int, default=16, help="waveform partitions")
    p.add_argument("--source", choices=["mitdb", "cinc2017", "synthetic"], default="mitdb")
    p.add_argument("--json", default=None, help="write both runs and the ratio here")
    p.set_defaults(fn=cmd_scaleout)

    p = sub.add_parser("fuzz", help="hostile input on the live waveform topic: every bad message dead-lettered, "
                                    "the worker alive, no valid window lost")
    p.add_argument("--messages", type=int, default=10_000, help="hostile messages, spread over the run")
    p.add_argument("--beds", type=int, default=8, help="real beds streaming meanwhile")
    p.add_argument("--duration", type=float, default=60.0, help="simulated seconds of streaming")
    p.add_argument("--speed", type=float, default=1.0, help="1 = real time, 2 = twice as fast")
    p.add_argument("--seed", type=int, default=0, help="the hostile messages and the beds' records")
    p.add_argument("--source", choices=["mitdb", "cinc2017", "synthetic"], default="mitdb")
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_fuzz)

    p = sub.add_parser("train", help="rebuild the model zoo from the shared data (reproducible from --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="artifact folder (default: the packaged models/artifacts)")
    p.add_argument("--only", nargs="*", default=None, metavar="NAME", help="train only these zoo models")
    p.add_argument("--table-only", action="store_true", help="train nothing; print the table of the artifacts")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("evaluate", help="score a PhysioNet folder: JSON metrics, ROC + calibration PNG")
    p.add_argument("--data", required=True, help="a folder in the format of ../shared/data/cinc2017 or mitdb")
    p.add_argument("--format", choices=["cinc2017", "mitdb"], default=None, help="default: guessed from the folder")
    p.add_argument("--beds", type=int, default=64, help="the load the served ensemble is chosen for")
    p.add_argument("--aligned", action="store_true",
                   help="plan for every bed's windows falling due in the same tick (worst case); default: beds "
                        "spread over the hop, as holmes bench")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--single", action="store_true",
                       help="serve the best single model the planner would choose at N beds (ensembles of one)")
    which.add_argument("--model", default=None, metavar="ID", help="serve this one zoo model (name or name@version)")
    p.add_argument("--split", choices=["all", "train", "val", "test"], default="all",
                   help="score only the records of this fixed split (models/SPLITS.md); test = held-out figures")
    p.add_argument("--window-s", type=float, default=None, help="the stream's window, 10 or 30 (default "
                   "HOLMES_WINDOW_S)")
    p.add_argument("--no-recalibrate", action="store_true",
                   help="skip the record recalibration reported beside the headline (Platt on the folder's "
                        "validation records, which are scored for it)")
    p.add_argument("--json", required=True)
    p.add_argument("--png", default=None, help="default: the JSON path with .png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_evaluate)

    from holmes.cli_ensemble import add_ensemble_commands
    from holmes.cli_models import add_models_commands

    add_models_commands(sub)
    add_ensemble_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(os.environ.get("HOLMES_LOG_LEVEL", "info"))
    try:
        return int(args.fn(args))
    except KeyboardInterrupt:
        return 130
