"""The CLI lists every command, and settings come from HOLMES_* variables with units in their names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from holmes.cli import build_parser
from holmes.settings import ApiSettings, Settings, WorkerSettings


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "holmes", "--help"], capture_output=True, text=True, check=True)
    for command in ("up", "broker", "worker", "api", "simulate", "bench", "train", "evaluate", "models"):
        assert f"    {command}" in out.stdout


def test_bench_arguments() -> None:
    args = build_parser().parse_args(["bench", "--beds", "64", "--duration", "60", "--hop", "2.5", "--json", "x.json"])
    assert (args.beds, args.duration, args.hop, args.json) == ([64], 60.0, 2.5, "x.json")
    sweep = build_parser().parse_args(["bench", "--beds", "16,64,1000", "--duration", "30", "--compare"])
    assert sweep.beds == [16, 64, 1000] and sweep.compare and sweep.mode == "batched" and not sweep.aligned


@pytest.mark.parametrize("beds", ["0", "16,x", "-4"])
def test_bench_refuses_bad_bed_counts(beds: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--beds", beds, "--duration", "60"])
    assert "--beds" in capsys.readouterr().err


def test_simulate_rejects_unknown_source(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--beds", "2", "--duration", "5", "--source", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOLMES_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("HOLMES_HOP_S", "2.5")
    monkeypatch.setenv("HOLMES_TOPIC_PREFIX", "ward7")
    s = Settings()
    assert s.kafka_bootstrap == "kafka:9092" and s.hop_s == 2.5
    assert s.topics().waveforms.name == "ward7.waveforms"
    with pytest.raises(ValueError):
        s.hop_s = 1.0  # type: ignore[misc]  # frozen


def test_invalid_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOLMES_FETCH_MAX_WAIT_MS", "-5")
    with pytest.raises(ValueError, match="fetch_max_wait_ms"):
        WorkerSettings()


def test_database_defaults_to_sqlite_in_the_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOLMES_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("HOLMES_DATABASE_URL", raising=False)
    assert ApiSettings().resolved_database_url() == f"sqlite:///{tmp_path / 'holmes.db'}"
