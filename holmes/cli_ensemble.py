"""``holmes ensemble ...``: the latency-aware ensemble selector's offline report.

Wire it in with ``add_ensemble_commands(sub)`` in ``holmes.cli.build_parser``; every subcommand sets
``fn``, which ``holmes.cli.main`` calls with the parsed arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from holmes.settings import WorkerSettings

__all__ = ["add_ensemble_commands", "parse_numbers"]

EXIT_USAGE = 2


def parse_numbers(text: str, kind: type[int] | type[float]) -> list[int] | list[float]:
    """``"20,50,100"`` -> ``[20, 50, 100]`` (positive numbers); argparse reports a ValueError as usage."""
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values  # type: ignore[return-value]


def cmd_report(args: argparse.Namespace) -> int:
    """Compare the selector with the exact optimum and the baselines; print tables, write JSON / PNG."""
    from ensemble.errors import EnsembleError
    from ensemble.report import build_report, format_report, plot_report
    from models.zoo import load_zoo

    settings = WorkerSettings()
    window_s = args.window_s if args.window_s is not None else settings.window_s
    try:
        report = build_report(
            load_zoo(settings.model_dir), budgets_ms=args.budgets, beds=args.beds, window_s=window_s,
            leads=args.leads, artifact_dir=settings.model_dir, hop_s=settings.hop_s, phases=args.phases,
            seed=args.seed, ceiling=args.ceiling, progress=not args.quiet,
        )
    except EnsembleError as exc:
        print(f"holmes ensemble report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(format_report(report))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    if args.png:
        plot_report(report, Path(args.png))
        print(f"wrote {args.png}")
    return 0


def add_ensemble_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``holmes ensemble report`` to the ``holmes`` parser."""
    parser = subparsers.add_parser(
        "ensemble", help="latency-aware ensemble selection: report",
        description="The ensemble selector (validation split only) against the exact optimum and baselines.",
    )
    sub = parser.add_subparsers(dest="ensemble_command", required=True, metavar="ACTION")

    p = sub.add_parser(
        "report", help="selector vs exact optimum, best single, greedy and random, per load and p99 budget",
    )
    p.add_argument("--budgets", type=lambda t: parse_numbers(t, float), default=[20, 50, 100, 200, 500, 1000],
                   metavar="MS,MS,...", help="p99 budgets in ms (default 20,50,100,200,500,1000)")
    p.add_argument("--beds", type=lambda t: parse_numbers(t, int), default=[1, 64, 256, 1000],
                   metavar="N,N,...", help="loads in beds (default 1,64,256,1000)")
    p.add_argument("--window-s", type=float, default=None, help="stream window, 10 or 30 (default HOLMES_WINDOW_S)")
    p.add_argument("--leads", type=int, default=2, help="leads the stream delivers (default 2)")
    p.add_argument("--phases", type=int, default=1,
                   help="groups per hop in which beds' windows fall due (1 = all at once, the worst case)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random baseline and random starts")
    p.add_argument("--json", default=None, metavar="PATH", help="write the full report here")
    p.add_argument("--png", default=None, metavar="PATH", help="write the Pareto-front plot here")
    p.add_argument("--ceiling", action="store_true",
                   help="also the best subsets picked on the test split (hindsight: what a margin could be)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_report)
