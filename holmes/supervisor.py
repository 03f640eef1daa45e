"""``holmes up``: the broker, a worker, the API and simulated beds as supervised child processes."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import time
import urllib.request
from pathlib import Path

from holmes.procs import Child, holmes_argv, wait_for
from holmes.settings import Settings
from ingest.broker import EmbeddedBroker, free_port
from ingest.topics import ensure_topics

log = logging.getLogger(__name__)


def api_ready(port: int) -> bool:
    """True once the API answers ``/readyz`` with 200 (database reachable, consumer joined)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except OSError:
        return False


class Stack:
    """Broker (embedded unless ``HOLMES_KAFKA_BOOTSTRAP`` is set), topics, one worker and the API."""

    def __init__(self, settings: Settings, run_dir: Path, api_port: int | None = None,
                 env: dict[str, str] | None = None, embedded: bool | None = None) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.api_port = api_port if api_port is not None else settings.api_port
        self.extra_env = env or {}
        self.embedded = not settings.kafka_bootstrap if embedded is None else embedded
        self.broker: EmbeddedBroker | None = None
        self.children: list[Child] = []
        self.bootstrap = settings.kafka_bootstrap or ""

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env, "HOLMES_KAFKA_BOOTSTRAP": self.bootstrap,
                "HOLMES_STATE_DIR": str(self.run_dir)}

    def start(self, ready_timeout_s: float = 90.0) -> Stack:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.embedded:
            self.broker = EmbeddedBroker(log_path=self.run_dir / "broker.log").start()
            self.bootstrap = self.broker.bootstrap
            log.info("embedded broker on %s", self.bootstrap)
        ensure_topics(self.bootstrap, self.settings.topics().all())
        ready_file = self.run_dir / "worker.ready"
        ready_file.unlink(missing_ok=True)
        self.spawn("worker", ["worker", "--ready-file", str(ready_file)])
        self.spawn("api", ["api", "--port", str(self.api_port)])
        wait_for(ready_file.exists, ready_timeout_s, "the worker to join its consumer group", self.children)
        wait_for(lambda: api_ready(self.api_port), ready_timeout_s, "the API to become ready", self.children)
        return self

    def spawn(self, name: str, args: list[str]) -> Child:
        child = Child(name, holmes_argv(*args), self.env(), self.run_dir / f"{name}.log")
        self.children.append(child)
        return child

    def stop(self) -> None:
        """Children in reverse start order, then the broker."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_up(settings: Settings, beds: int, source: str, port: int | None) -> int:
    """Start everything, print where to look, and stop it all on Ctrl-C / SIGTERM or when a part dies."""
    api_port = port if port is not None else (settings.api_port or free_port())
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    admin_token = None
    if settings.admin_token is None and settings.env != "production":
        admin_token = secrets.token_urlsafe(32)
    stack = Stack(settings, settings.state_dir.resolve(), api_port=api_port,
                  env={"HOLMES_ADMIN_TOKEN": admin_token} if admin_token else None)
    print("holmes: starting broker, worker and API (first start takes ~10 s) ...", flush=True)
    try:
        stack.start()
        # The packaged models go through the registration gates in the background; the worker serves
        # the packaged artifacts meanwhile, so the page does not wait for it.
        stack.spawn("models", ["models", "import-zoo"])
        if beds:
            stack.spawn("simulator", ["simulate", "--beds", str(beds), "--duration", str(7 * 24 * 3600),
                                      "--source", source, "--quiet"])
        print(json.dumps({"kafka_bootstrap": stack.bootstrap, "logs": str(stack.run_dir)}))
        print(f"  model registry: importing the packaged models in the background (log: {stack.run_dir}/models.log)")
        print(f"\n  dashboard: http://127.0.0.1:{api_port}/\n  API docs:  http://127.0.0.1:{api_port}/docs\n"
              f"  {beds} simulated beds ({source}); first scores after one window (10 s). Ctrl-C stops.\n",
              flush=True)
        if admin_token:
            print(f"  admin token (dev mode, this run only): {admin_token}\n", flush=True)
        while not stopping:
            dead = [c for c in stack.children if not c.alive() and c.name != "models"]
            if dead:
                for c in dead:
                    log.error("%s exited with code %s; stopping everything\n%s", c.name, c.proc.returncode,
                              c.tail())
                return 1
            time.sleep(0.3)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        print("holmes: shutting down ...", flush=True)
        stack.stop()
        print("holmes: stopped.", flush=True)
