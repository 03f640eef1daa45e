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
    """Broker (embedded unless ``HOLMES_KAFKA_BOOTSTRAP`` is set), topics, workers and the API.

    Children can be killed and restarted one by one (``kill``, ``restart``), and more workers added to the
    consumer group (``spawn_worker``), for the fault tests and ``holmes scaleout``.
    """

    def __init__(self, settings: Settings, run_dir: Path, api_port: int | None = None,
                 env: dict[str, str] | None = None, embedded: bool | None = None) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.api_port = api_port if api_port is not None else settings.api_port
        self.extra_env = env or {}
        self.embedded = not settings.kafka_bootstrap if embedded is None else embedded
        self.broker: EmbeddedBroker | None = None
        self.children: list[Child] = []
        self._specs: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.bootstrap = settings.kafka_bootstrap or ""

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env, "HOLMES_KAFKA_BOOTSTRAP": self.bootstrap,
                "HOLMES_STATE_DIR": str(self.run_dir)}

    def start(self, ready_timeout_s: float = 90.0, workers: int = 1, api: bool = True) -> Stack:
        """Broker (if embedded), topics, ``workers`` workers (one consumer group) and the API; waits for them."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.embedded:
            self.start_broker()
        ensure_topics(self.bootstrap, self.settings.topics().all())
        for i in range(workers):
            self.spawn_worker("worker" if i == 0 else f"worker-{i + 1}", wait_s=None)
        if api:
            self.spawn("api", ["api", "--port", str(self.api_port)])
        for i in range(workers):
            self.wait_worker("worker" if i == 0 else f"worker-{i + 1}", ready_timeout_s)
        if api:
            wait_for(lambda: api_ready(self.api_port), ready_timeout_s, "the API to become ready", self.children)
        return self

    def start_broker(self, port: int | None = None) -> EmbeddedBroker:
        """Start the embedded broker (on ``port``, e.g. the previous one's after a restart)."""
        self.broker = EmbeddedBroker(port=port, log_path=self.run_dir / "broker.log").start()
        self.bootstrap = self.broker.bootstrap
        log.info("embedded broker on %s", self.bootstrap)
        return self.broker

    def ready_file(self, name: str) -> Path:
        """Touched by worker ``name`` whenever a rebalance has given it its partitions."""
        return self.run_dir / f"{name}.ready"

    def spawn_worker(self, name: str = "worker", wait_s: float | None = 90.0) -> Child:
        """Start a worker (another member of the same consumer group); the first, ``worker``, keeps its state
        in ``run_dir/worker``, any other in ``run_dir/<name>/worker``. Waits until it has partitions."""
        ready = self.ready_file(name)
        ready.unlink(missing_ok=True)
        env = None
        if name != "worker":
            (self.run_dir / name).mkdir(parents=True, exist_ok=True)
            env = {"HOLMES_STATE_DIR": str(self.run_dir / name)}
        child = self.spawn(name, ["worker", "--ready-file", str(ready)], env=env)
        if wait_s is not None:
            self.wait_worker(name, wait_s)
        return child

    def wait_worker(self, name: str, timeout_s: float = 90.0) -> None:
        """Wait until worker ``name`` has joined its consumer group."""
        wait_for(self.ready_file(name).exists, timeout_s, f"{name} to join its consumer group", self.children)

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, holmes_argv(*args), {**self.env(), **(env or {})}, self.run_dir / f"{name}.log")
        self.children.append(child)
        self._specs[name] = (list(args), dict(env or {}))
        return child

    def child(self, name: str) -> Child:
        """The running child called ``name``."""
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(f"no child {name!r}; running: {', '.join(c.name for c in self.children)}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` to child ``name`` (SIGKILL: no chance to clean up), wait for it and forget it."""
        child = self.child(name)
        if child.alive():
            os.killpg(child.pid, sig)
            child.proc.wait()
        self.children.remove(child)
        return child.stop()

    def restart(self, name: str, sig: int = signal.SIGKILL, ready_timeout_s: float = 90.0) -> Child:
        """Kill child ``name`` with ``sig`` and start it again with the same command line and environment."""
        args, env = self._specs[name]
        self.kill(name, sig)
        if name == "worker" or name.startswith("worker-"):
            return self.spawn_worker(name, wait_s=ready_timeout_s)
        child = self.spawn(name, args, env)
        if name == "api":
            wait_for(lambda: api_ready(self.api_port), ready_timeout_s, "the API to become ready", self.children)
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
