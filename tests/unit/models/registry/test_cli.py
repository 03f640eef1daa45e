"""``holmes models ...`` end to end on a real database (the lead may move this to tests/unit/holmes)."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import pytest

from holmes import cli_models
from holmes.cli_models import add_models_commands, format_table
from holmes.settings import ApiSettings
from models.registry import RegistrationConfig
from tests.unit.models.registry.conftest import RR_CARD, TEST_GATES, BundleFactory


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="holmes")
    add_models_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["models", *argv])
    return int(args.fn(args))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path, data_dir: Path) -> Path:
    monkeypatch.setenv("HOLMES_DATABASE_URL", database_url)
    monkeypatch.setenv("HOLMES_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HOLMES_DATA_DIR", str(data_dir))
    config = cli_models.registration_config

    def small_profile(settings: ApiSettings, **kwargs: float | None) -> RegistrationConfig:
        return dataclasses.replace(config(settings, **kwargs), gates=TEST_GATES)

    monkeypatch.setattr(cli_models, "registration_config", small_profile)
    return tmp_path / "state"


def test_registration_config_follows_the_settings(tmp_path: Path) -> None:
    settings = ApiSettings(state_dir=tmp_path / "s", data_dir=tmp_path / "d")
    config = cli_models.registration_config(settings, min_roc_auc=0.7)
    assert config.artifact_root == (tmp_path / "s" / "models").resolve()
    assert config.data_dir == (tmp_path / "d").resolve()
    assert config.gates.min_roc_auc == 0.7 and config.gates.batch_sizes[-1] == 256


def test_register_list_show_promote_retire(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("list") == 0
    assert "no models registered" in capsys.readouterr().out
    assert run("register", str(RR_CARD), "--name", "rr-cli", "--owner", "ana") == 0
    out = capsys.readouterr().out
    for gate in ("artifact", "contract", "smoke", "latency", "backtest"):
        assert f"  {gate:<9} ok" in out
    assert "registered rr-cli@1 as validated" in out
    assert run("promote", "rr-cli@1") == 0 and run("promote", "rr-cli@1") == 0
    assert "rr-cli@1 is now active" in capsys.readouterr().out
    assert run("list") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:6] == ["NAME", "VERSION", "FAMILY", "WINDOW", "LEADS", "STATUS"]
    assert table[2].split()[:7] == ["rr-cli", "1", "rr-mlp", "10", "s", "1", "active"]
    assert run("show", "rr-cli") == 0
    shown = capsys.readouterr().out
    assert shown.startswith("rr-cli@1  [active]") and "roc_auc" in shown and "shadow -> active" in shown
    assert run("retire", "rr-cli@1", "--reason", "replaced") == 0
    assert run("promote", "rr-cli@1") == 1
    assert "retired is final" in capsys.readouterr().err
    assert run("show", "nothing") == 1
    assert run("promote", "rr-cli") == 2


def test_refused_registration_exits_1_with_the_reason(env: Path, rr_bundle: BundleFactory,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run("register", str(rr_bundle(input={"window_s": 20})), "--name", "bad") == 1
    captured = capsys.readouterr()
    assert "  contract  FAIL" in captured.out
    assert "refused: contract gate failed" in captured.err and "nothing was registered" in captured.err
    assert not [p for p in (env / "models").rglob("*") if p.is_file()]


def test_import_zoo_is_idempotent(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    packaged = tmp_path / "packaged"
    packaged.mkdir()
    for path in (RR_CARD, RR_CARD.with_suffix(".pt"), RR_CARD.with_suffix(".npz")):
        shutil.copyfile(path, packaged / path.name)
    assert run("import-zoo", "--artifact-dir", str(packaged)) == 0
    assert "registered rr-af@1 (active)" in capsys.readouterr().out
    assert run("import-zoo", "--artifact-dir", str(packaged)) == 0
    assert "skipped    rr-af@1 (active): already registered" in capsys.readouterr().out


def test_format_table_aligns_columns() -> None:
    text = format_table(["A", "NUM"], [["xy", "1"], ["z", "100"]], [False, True])
    assert text.splitlines() == ["A   NUM", "--  ---", "xy    1", "z   100"]
