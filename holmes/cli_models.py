"""``holmes models ...``: register, list, show, promote, retire and import-zoo on the model registry.

Wire it in with ``add_models_commands(sub)`` in ``holmes.cli.build_parser``; every subcommand sets
``fn``, which ``holmes.cli.main`` calls with the parsed arguments.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from holmes.settings import ApiSettings

if TYPE_CHECKING:
    from models.registry import ModelRecord
    from models.registry.gates import GateResult
    from models.registry.registration import ImportOutcome, RegistrationConfig, Registry

__all__ = ["add_models_commands", "format_table", "import_packaged_models", "open_registry", "registration_config"]

EXIT_REFUSED = 1
EXIT_USAGE = 2


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def registration_config(settings: ApiSettings, *, min_roc_auc: float | None = None) -> RegistrationConfig:
    """Artifacts under ``HOLMES_STATE_DIR/models``, real windows from ``HOLMES_DATA_DIR`` (also for ``create_app``)."""
    from models.registry.gates import GateConfig
    from models.registry.registration import RegistrationConfig

    gates = GateConfig() if min_roc_auc is None else GateConfig(min_roc_auc=min_roc_auc)
    return RegistrationConfig(
        artifact_root=(settings.state_dir / "models").resolve(), data_dir=settings.data_dir.resolve(), gates=gates
    )


@contextmanager
def open_registry(settings: ApiSettings, *, min_roc_auc: float | None = None) -> Iterator[Registry]:
    """The registry on ``HOLMES_DATABASE_URL`` (migrated), storing artifacts under ``HOLMES_STATE_DIR/models``."""
    from api.db import make_engine
    from models.registry import RegistryStore, upgrade_registry
    from models.registry.registration import Registry

    # Alembic reports its context at INFO on every run; routine here, and it would clutter the tables.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade_registry(engine)
        yield Registry(RegistryStore(engine), registration_config(settings, min_roc_auc=min_roc_auc))
    finally:
        engine.dispose()


# -- output ------------------------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] = ()) -> str:
    """A plain-text table; columns flagged in ``right`` are right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    align = list(right) + [False] * (len(headers) - len(right))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a else c.ljust(w) for c, w, a in zip(cells, widths, align, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def _ms(record: ModelRecord, batch: int) -> str:
    value = record.latency_ms.get(batch)
    return f"{value:.2f}" if value is not None else "-"


def _auc(record: ModelRecord) -> str:
    value = record.metrics.get("backtest", {}).get("roc_auc")
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


LIST_HEADERS = ("NAME", "VERSION", "FAMILY", "WINDOW", "LEADS", "STATUS", "VAL ROC-AUC", "MS@1", "MS@64", "OWNER",
                "UPDATED (UTC)")
LIST_RIGHT = (False, True, False, True, True, False, True, True, True, False, False)


def _list_row(r: ModelRecord) -> list[str]:
    return [r.name, str(r.version), r.family, f"{r.window_s:g} s", str(r.leads), r.status, _auc(r), _ms(r, 1),
            _ms(r, 64), r.owner or "-", _when(r.updated_at)]


def _record_json(record: ModelRecord) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(record)
    return json.loads(json.dumps(data, default=str))


def _print_gate(result: GateResult, out: TextIO) -> None:
    if result.status == "running":
        if out.isatty():
            print(f"  {result.gate:<9} ...", end="\r", file=out, flush=True)
        return
    mark = "ok" if result.status == "passed" else "FAIL"
    print(f"  {result.gate:<9} {mark:<4} {result.seconds:6.1f} s  {result.reason}", file=out, flush=True)


# -- commands ----------------------------------------------------------------------------------------


def cmd_register(args: argparse.Namespace) -> int:
    """Register an artifact through the gates."""
    from models.registry import RegistryError

    print(f"registering {args.path} (gates: artifact, contract, smoke, latency, backtest)")
    with open_registry(ApiSettings(), min_roc_auc=args.min_roc_auc) as registry:
        try:
            record = registry.register(
                Path(args.path), name=args.name, version=args.version, owner=args.owner,
                card=Path(args.card) if args.card else None, progress=lambda r: _print_gate(r, sys.stdout),
            )
        except RegistryError as exc:
            print(f"refused: {exc}; nothing was registered", file=sys.stderr)
            return EXIT_REFUSED
        print(f"registered {record.ref} as {record.status} ({registry.card_path(record)})")
    print(f"next: holmes models promote {record.ref}   # validated -> shadow")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print the registered versions as a table (or JSON)."""
    statuses = tuple(args.status) if args.status else None
    with open_registry(ApiSettings()) as registry:
        records = registry.store.versions(args.name, statuses)
    if args.json:
        print(json.dumps([_record_json(r) for r in records], indent=2))
        return 0
    if not records:
        print("no models registered (holmes models register PATH --name NAME, or holmes models import-zoo)")
        return 0
    print(format_table(LIST_HEADERS, [_list_row(r) for r in records], LIST_RIGHT))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one version: contract, artifact, metrics, latency profile, gates and history."""
    from models.registry import RegistryError, parse_ref

    with open_registry(ApiSettings()) as registry:
        try:
            name, version = parse_ref(args.ref)
            record = registry.store.get(name, version)
        except RegistryError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_REFUSED
        card_path = registry.card_path(record)
    if args.json:
        print(json.dumps(_record_json(record), indent=2))
        return 0
    print(describe(record, card_path))
    return 0


def describe(record: ModelRecord, card_path: Path) -> str:
    """The human-readable ``holmes models show`` text."""
    backtest = record.metrics.get("backtest", {})
    lines = [
        f"{record.ref}  [{record.status}]",
        f"  family        {record.family} ({record.artifact_format})",
        f"  contract      {record.leads} lead(s), {record.sample_rate_hz:g} Hz, {record.window_s:g} s window, "
        f"{record.input_kind} input",
        f"  owner         {record.owner or '-'}",
        f"  artifact      {card_path}",
        f"  sha256        {record.artifact_sha256}",
        "  backtest      " + (", ".join(f"{k} {v}" for k, v in backtest.items()) or "-"),
        "  latency (ms per call by batch size)",
    ]
    sizes = sorted(record.latency_ms)
    table = format_table([str(b) for b in sizes], [[f"{record.latency_ms[b]:.2f}" for b in sizes]], [True] * len(sizes))
    lines += [f"    {row}" for row in table.splitlines()]
    lines.append("  gates")
    lines += [f"    {g['gate']:<9} {g['status']:<7} {g.get('reason', '')}" for g in record.gates]
    lines.append("  history (UTC)")
    lines += [
        f"    {_when(t.at)}  {(t.from_status or '-'):>10} -> {t.to_status:<10} {t.actor or '-':<12} {t.reason}"
        for t in record.history
    ]
    return "\n".join(lines)


def _transition(args: argparse.Namespace, action: str) -> int:
    from models.registry import RegistryError, parse_ref

    try:
        name, version = parse_ref(args.ref)
    except RegistryError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    if version is None:
        print(f"{action} needs NAME@VERSION, e.g. {name}@1", file=sys.stderr)
        return EXIT_USAGE
    with open_registry(ApiSettings()) as registry:
        try:
            step = registry.promote if action == "promote" else registry.retire
            record = step(name, version, actor=args.actor, reason=args.reason)
        except RegistryError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        superseded = [r.ref for r in registry.store.versions(name, ("retired",))
                      if r.retired_at == record.active_at and record.status == "active"]
    print(f"{record.ref} is now {record.status}")
    for ref in superseded:
        print(f"{ref} was active and is now retired (superseded by {record.ref})")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Promote a version one step: validated -> shadow -> active."""
    return _transition(args, "promote")


def cmd_retire(args: argparse.Namespace) -> int:
    """Retire a version."""
    return _transition(args, "retire")


def import_packaged_models(
    settings: ApiSettings | None = None, *, artifact_dir: Path | None = None, out: TextIO | None = None
) -> list[ImportOutcome]:
    """Register the packaged zoo artifacts (through the gates) as active; idempotent, for ``holmes up``."""
    stream = out if out is not None else sys.stdout
    with open_registry(settings or ApiSettings()) as registry:
        outcomes = registry.import_zoo(
            artifact_dir,
            on_card=lambda card: print(f"{card.name}:", file=stream, flush=True),
            progress=lambda r: _print_gate(r, stream),
        )
    for outcome in outcomes:
        status = f" ({outcome.status})" if outcome.status else ""
        print(f"{outcome.action:<10} {outcome.ref}{status}: {outcome.detail}", file=stream)
    return outcomes


def cmd_import_zoo(args: argparse.Namespace) -> int:
    """Register the packaged zoo artifacts as active."""
    outcomes = import_packaged_models(artifact_dir=Path(args.artifact_dir) if args.artifact_dir else None)
    return EXIT_REFUSED if any(o.action == "failed" for o in outcomes) else 0


# -- the parser --------------------------------------------------------------------------------------


def add_models_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``holmes models register|list|show|promote|retire|import-zoo`` to the ``holmes`` parser."""
    from models.registry.tables import STATUSES

    parser = subparsers.add_parser(
        "models", help="model registry: register, list, show, promote, retire, import-zoo",
        description="The model registry (HOLMES_DATABASE_URL; artifacts under HOLMES_STATE_DIR/models; "
                    "gates read real windows from HOLMES_DATA_DIR).",
    )
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    p = sub.add_parser("register", help="register an artifact after the gates pass (nothing is kept if one fails)")
    p.add_argument("path", metavar="PATH",
                   help="bundle folder, .zip/.tar bundle, card .json next to its weights, or a .pt with --card")
    p.add_argument("--name", default=None, help="registry name (default: the card's name)")
    p.add_argument("--version", type=int, default=None, help="version (default: the card's, else next free)")
    p.add_argument("--owner", default=_user(), help="who owns the model (default: the current user)")
    p.add_argument("--card", default=None, help="model card .json for a single .pt (TorchScript or state dict)")
    p.add_argument("--min-roc-auc", type=float, default=None, help="backtest floor (default 0.6)")
    p.set_defaults(fn=cmd_register)

    p = sub.add_parser("list", help="table of registered versions")
    p.add_argument("--name", default=None, help="only this model name")
    p.add_argument("--status", action="append", choices=STATUSES, help="only these statuses (repeatable)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("show", help="one version in detail: NAME (active, else newest) or NAME@VERSION")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.set_defaults(fn=cmd_show)

    for action, text, fn in (
        ("promote", "one step forward: validated -> shadow -> active (the active version is retired)", cmd_promote),
        ("retire", "retire a version (final)", cmd_retire),
    ):
        p = sub.add_parser(action, help=text)
        p.add_argument("ref", metavar="NAME@VERSION")
        p.add_argument("--reason", default=None, help="recorded in the history")
        p.add_argument("--actor", default=_user(), help="who does it (default: the current user)")
        p.set_defaults(fn=fn)

    p = sub.add_parser("import-zoo", help="register the packaged zoo artifacts as active (idempotent)")
    p.add_argument("--artifact-dir", default=None, help="folder of cards and weights (default: the packaged one)")
    p.set_defaults(fn=cmd_import_zoo)
