"""`holmes up` starts everything, scores flow to the API, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from ingest.broker import free_port

pytestmark = pytest.mark.integration


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def test_up_serves_scores_and_ctrl_c_stops_every_child(tmp_path: Path, data_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "HOLMES_STATE_DIR": str(tmp_path), "HOLMES_DATA_DIR": str(data_dir),
           "HOLMES_API_PORT": str(port), "HOLMES_TOPIC_PREFIX": f"up{port}"}
    env.pop("HOLMES_KAFKA_BOOTSTRAP", None)
    env.pop("HOLMES_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "holmes", "up", "--beds", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    children: list[psutil.Process] = []
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.time() + 120
        while time.time() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "dashboard:" in line or proc.poll() is not None:
                break
        assert f"http://127.0.0.1:{port}/" in "".join(lines), "".join(lines)
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "tansu" in names and " worker" in names and " api" in names and " simulate" in names

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:  # noqa: S310
            assert resp.status == 200 and b"<html" in resp.read().lower()
        beds: list = []
        deadline = time.time() + 60
        while time.time() < deadline and len(beds) < 2:
            beds = get_json(f"http://127.0.0.1:{port}/api/beds")  # type: ignore[assignment]
            time.sleep(1)
        assert sorted(b["bed_id"] for b in beds) == ["bed-001", "bed-002"]
        assert all(b["latest"]["state"] in ("ok", "unscorable") for b in beds)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, out
    assert "stopped." in out
    time.sleep(0.5)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [c.cmdline() for c in alive]
