"""The worker's planner is built in one place, and `holmes evaluate` scores with the plan it would serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from holmes.cli import build_parser, main
from holmes.serving import build_planner, first_load
from holmes.settings import WorkerSettings
from models.zoo import ServedModel, load_zoo


@pytest.fixture(scope="module")
def zoo() -> list[ServedModel]:
    return load_zoo()


def _settings(**values: object) -> WorkerSettings:
    return WorkerSettings(_env_file=None, **values)  # type: ignore[arg-type]


def test_the_planner_follows_the_worker_settings(zoo: list[ServedModel]) -> None:
    settings = _settings(budget_ms=800.0, window_s=30.0, hop_s=2.5, max_members=3, max_batch=64)
    planner = build_planner(zoo, settings, feature_ms=2.0, profile_scales={})
    c = planner.config
    assert (c.budget_ms, c.window_s, c.hop_s, c.max_members) == (800.0, 30.0, 2.5, 3)
    assert (planner.latency.costs.feature_ms, planner.latency.costs.max_batch) == (2.0, 64)
    per_request = build_planner(zoo, _settings(exec_mode="per-request"), feature_ms=2.0, profile_scales={})
    assert per_request.latency.costs.max_batch == 1
    timed = build_planner(zoo, _settings())
    assert timed.latency.costs.feature_ms > 0  # timed when not given
    # and so is every candidate against its card, the profiles scaled by what was measured
    assert set(timed.latency.profile_scales) == set(timed.candidate_ids)
    for model_id, (small, large) in timed.latency.profile_scales.items():
        assert 0 < small < 50 and 0 < large < 50
        card = planner.latency.profiles[model_id]
        assert timed.latency.profiles[model_id](1) == pytest.approx(card(1) * small)
        assert timed.latency.profiles[model_id](64) == pytest.approx(card(64) * large)


def test_first_load_is_the_planned_beds_and_phases() -> None:
    load = first_load(_settings(plan_beds=1000, plan_phases=5, hop_s=5.0))
    assert (load.beds, load.phases, load.hop_s) == (1000, 5, 5.0)


def test_evaluate_arguments() -> None:
    args = build_parser().parse_args(["evaluate", "--data", "d", "--json", "x.json", "--beds", "1000", "--aligned",
                                      "--split", "test"])
    assert (args.beds, args.aligned, args.split, args.single, args.model) == (1000, True, "test", False, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--data", "d", "--json", "x", "--single", "--model", "rr-af"])


def _mitdb_pair(data_dir: Path, folder: Path) -> Path:
    folder.mkdir()
    for name in ("100", "201"):
        for ext in ("hea", "dat", "atr"):
            (folder / f"{name}.{ext}").symlink_to(data_dir / "mitdb" / f"{name}.{ext}")
    return folder


def test_evaluate_scores_with_the_ensemble_served_at_n_beds(
    data_dir: Path, zoo: list[ServedModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HOLMES_WINDOW_S", "HOLMES_HOP_S", "HOLMES_BUDGET_MS", "HOLMES_MAX_MEMBERS", "HOLMES_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    folder = _mitdb_pair(data_dir, tmp_path / "mitdb")
    out = tmp_path / "e.json"
    assert main(["evaluate", "--data", str(folder), "--beds", "64", "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    ensemble = report["ensemble"]
    settings = _settings(plan_beds=64, plan_phases=5)
    scales = {m: tuple(scale) for m, scale in ensemble["profile_scales"].items()}
    assert scales  # evaluate plans with the profiles timed here, as the worker does
    expected = build_planner(zoo, settings, feature_ms=ensemble["feature_ms"], feature_fixed_ms=ensemble[
        "feature_fixed_ms"], profile_scales=scales).start(first_load(settings))
    assert report["models"] == ensemble["members"] == list(expected.member_ids)
    assert len(ensemble["members"]) > 1 and ensemble["mode"] == "ensemble"
    assert (ensemble["beds"], ensemble["phases"], ensemble["aligned"]) == (64, 5, False)
    assert ensemble["objective"] == pytest.approx(expected.objective, abs=1e-4)
    assert ensemble["predicted_p99_ms"] <= ensemble["budget_ms"]
    assert out.with_suffix(".png").is_file()

    single = tmp_path / "s.json"
    assert main(["evaluate", "--data", str(folder), "--beds", "64", "--single", "--json", str(single),
                 "--png", str(tmp_path / "s.png"), "--quiet"]) == 0
    one = json.loads(single.read_text())
    assert len(one["models"]) == 1 and one["ensemble"]["mode"] == "single"
    assert one["ensemble"]["objective"] <= ensemble["objective"]

    given = tmp_path / "g.json"
    assert main(["evaluate", "--data", str(folder), "--model", "rr-af", "--json", str(given), "--quiet"]) == 0
    model = json.loads(given.read_text())
    assert model["models"] == ["rr-af@1"] and model["ensemble"]["method"] == "given"
    assert model["ensemble"]["objective"] is not None and model["ensemble"]["predicted_p99_ms"] is not None
    assert main(["evaluate", "--data", str(tmp_path), "--json", str(tmp_path / "n.json"), "--quiet"]) == 2
