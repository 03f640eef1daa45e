"""Child-process supervision for ``holmes up`` and ``holmes bench``: no orphans, whatever happens; and the
garbage-collector setting every long-running ``holmes`` process takes once it has started (:func:`freeze_heap`)."""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ingest.broker import die_with_parent as _die_with_parent

log = logging.getLogger(__name__)


def freeze_heap(what: str) -> int:
    """Collect once, then put every object alive out of the cyclic collector's reach (:func:`gc.freeze`).

    Call it when a process has loaded what it keeps for good (imports, torch, the zoo, the app) and before it
    serves. A full (generation-2) collection otherwise walks all of that, holding the GIL: 170-225 ms
    pauses of the worker's event loop, executor and all, at 1,000 beds (a gc callback's timings), which
    made the stall 25-30 s into most 1,000-bed benches; the simulator and the API paused as long. Objects
    made later are collected as usual. Returns how many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%s: %d objects frozen out of the garbage collector", what, frozen)
    return frozen


class Child:
    """One supervised process with its own log file."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        log.info("started %s (pid %d), log: %s", name, self.proc.pid, log_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0f s; killing it", self.name, timeout_s)
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def holmes_argv(*args: str) -> list[str]:
    """The command line that runs a holmes subcommand with this interpreter."""
    return [sys.executable, "-m", "holmes", *args]


def wait_for(predicate: object, timeout_s: float, what: str, children: Sequence[Child] = ()) -> None:
    """Poll ``predicate()`` until true; fail early with the log tail if a child died meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited with code {child.proc.returncode} while waiting "
                                   f"for {what}:\n{child.tail()}")
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
