"""Folder evaluation on small real subsets, scored by the served ensemble: the JSON contract, the figure, the
gate's verdict on noise, windows and splits, and the record recalibration."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from ensemble.scoring import ServingPlan, WindowScorer
from holmes.serving import build_planner, first_load
from holmes.settings import WorkerSettings
from models import ModelError
from models.evaluate import (
    RECALIBRATION_MIN_PER_CLASS,
    RecordCalibration,
    aggregate,
    evaluate_folder,
    infer_format,
    record_split,
)
from models.zoo import ServedModel, load_zoo

POSITIVE = ("A00004", "A00015", "A00067", "A00087")
NEGATIVE = ("A00002", "A00006", "A00012", "A00014", "A00008", "A00013", "A00017", "A00020")
NOISY = ("A00022", "A00034", "A00125", "A00196", "A00201", "A00445", "A00585", "A00591")
SHORT = "A00984"  # 9.4 s: shorter than a 10-s window
CONTRACT = {"records", "scored", "unscorable", "roc_auc", "pr_auc", "sens_at_spec95", "ece", "models"}


@pytest.fixture(scope="module")
def zoo() -> list[ServedModel]:
    return load_zoo()


@pytest.fixture(scope="module")
def plan(zoo: list[ServedModel]) -> ServingPlan:
    """The plan a worker started for 64 beds spread over the hop would serve (feature cost fixed, not timed)."""
    settings = WorkerSettings(_env_file=None, plan_beds=64, plan_phases=5, window_s=10.0, hop_s=5.0)
    return build_planner(zoo, settings, feature_ms=1.4, profile_scales={}).start(first_load(settings))


def _described(plan: ServingPlan) -> dict[str, object]:
    return {"members": list(plan.member_ids), "objective": plan.objective, "predicted_p99_ms": plan.predicted_p99_ms,
            "budget_ms": plan.budget_ms, "beds": 64}


def _link(source: Path, target: Path, names: Sequence[str], exts: tuple[str, ...]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        for ext in exts:
            (target / f"{name}.{ext}").symlink_to(source / f"{name}.{ext}")


@pytest.fixture(scope="module")
def cinc_report(data_dir: Path, plan: ServingPlan, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("eval")
    folder = root / "cinc2017"
    names = POSITIVE + NEGATIVE + NOISY
    _link(data_dir / "cinc2017", folder, names, ("hea", "mat"))
    labels = dict.fromkeys(POSITIVE, "A") | dict.fromkeys(NEGATIVE[:4], "N") | dict.fromkeys(NEGATIVE[4:], "O")
    labels |= dict.fromkeys(NOISY, "~")
    (folder / "REFERENCE.csv").write_text("".join(f"{n},{labels[n]}\n" for n in names))
    report = evaluate_folder(folder, "cinc2017", WindowScorer(plan), root / "r.json", root / "r.png",
                             ensemble=_described(plan), progress=False)
    report["_paths"] = (root / "r.json", root / "r.png")
    return report


def test_the_served_plan_is_an_ensemble(plan: ServingPlan) -> None:
    assert len(plan.member_ids) > 1
    assert any(m.contract.leads == 1 for m in plan.members)  # CinC (one lead) windows have members to read them


def test_cinc_report_follows_the_contract(cinc_report: dict, plan: ServingPlan) -> None:
    json_path, png_path = cinc_report.pop("_paths")
    assert CONTRACT <= set(cinc_report)
    assert json.loads(json_path.read_text()) == cinc_report
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cinc_report["records"] == 20
    assert cinc_report["scored"] + cinc_report["unscorable"] == 20
    assert cinc_report["models"] == list(plan.member_ids)
    assert cinc_report["ensemble"]["members"] == list(plan.member_ids)
    assert {"objective", "predicted_p99_ms", "budget_ms", "beds"} <= set(cinc_report["ensemble"])
    assert cinc_report["n"] + cinc_report["unscorable_labelled"] == len(POSITIVE + NEGATIVE)
    assert cinc_report["n_pos"] >= 3  # the gate may turn a noisy AF recording away (A00015 is borderline)
    assert cinc_report["roc_auc"] is not None and cinc_report["roc_auc"] > 0.8
    for key in ("pr_auc", "sens_at_spec95", "ece"):
        assert 0.0 <= cinc_report[key] <= 1.0
    assert cinc_report["noisy"]["records"] == len(NOISY)
    assert 0 <= cinc_report["noisy"]["unscorable"] <= len(NOISY)
    assert cinc_report["window"]["n"] >= cinc_report["n"]


def test_too_few_validation_records_for_a_record_recalibration(cinc_report: dict) -> None:
    calibration = cinc_report["record_calibration"]
    assert calibration["method"] is None and "at least" in calibration["why"]


def test_noisy_records_are_unscorable_in_the_majority(cinc_report: dict) -> None:
    assert cinc_report["noisy"]["unscorable"] > len(NOISY) / 2


def test_mitdb_records_and_windows(data_dir: Path, plan: ServingPlan, tmp_path: Path) -> None:
    folder = tmp_path / "mitdb"
    _link(data_dir / "mitdb", folder, ("100", "201"), ("hea", "dat", "atr"))
    report = evaluate_folder(folder, "mitdb", WindowScorer(plan), tmp_path / "m.json", None, progress=False)
    assert CONTRACT <= set(report)
    assert report["models"] == list(plan.member_ids) and "ensemble" not in report
    assert (report["records"], report["scored"], report["unscorable"]) == (2, 2, 0)
    assert report["roc_auc"] == 1.0 and report["n_pos"] == 1
    assert report["window"]["n_pos"] >= 30 and report["window"]["roc_auc"] > 0.9
    assert report["held_out"]["n"] == 1  # record 100 is in the test split, 201 in train
    assert not (tmp_path / "m.png").exists()


class _Recorder:
    """A stand-in scorer that records what it is handed and scores by how much of a window is signal."""

    model_ids = ("recorder@1",)

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def score(self, signals: Sequence[np.ndarray], sample_rate_hz: float) -> list[object]:
        from ensemble.scoring import Verdict

        self.shapes += [np.shape(s) for s in signals]
        return [Verdict("ok", float(np.mean(s[0] != 0.0)), None, 1.0, 60.0, self.model_ids) for s in signals]


def test_windows_are_the_streams_and_a_short_record_is_padded(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cinc2017"
    _link(data_dir / "cinc2017", folder, (SHORT, "A00004"), ("hea", "mat"))
    (folder / "REFERENCE.csv").write_text(f"{SHORT},N\nA00004,A\n")
    recorder = _Recorder()
    report = evaluate_folder(folder, "cinc2017", recorder, tmp_path / "r.json", None, window_s=10.0, progress=False)
    assert set(recorder.shapes) == {(1, 2500)}  # one lead, 10 s at 250 Hz, for every window
    assert report["models"] == ["recorder@1"] and report["scored"] == 2
    assert len(recorder.shapes) == 1 + 3  # the 9.4-s record: one window; the 30-s A00004: three
    recorder = _Recorder()
    evaluate_folder(folder, "cinc2017", recorder, tmp_path / "s.json", None, window_s=30.0, progress=False)
    assert recorder.shapes == [(1, 7500), (1, 7500)]  # one zero-padded window for the short record


def test_split_selects_records(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mitdb"
    _link(data_dir / "mitdb", folder, ("100", "201"), ("hea", "dat", "atr"))
    report = evaluate_folder(folder, "mitdb", _Recorder(), tmp_path / "m.json", None, split="test", progress=False)
    assert (report["records"], report["split"]) == (1, "test")  # 100 is test, 201 train
    assert record_split("100", "mitdb") == "test" and record_split("999", "mitdb") is None
    with pytest.raises(ModelError, match="val split"):
        evaluate_folder(folder, "mitdb", _Recorder(), tmp_path / "v.json", None, split="val", progress=False)


def test_record_recalibration_is_fitted_on_the_validation_records(data_dir: Path, tmp_path: Path) -> None:
    reference = dict(line.split(",") for line in (data_dir / "cinc2017" / "REFERENCE.csv").read_text().split())
    val = [n for n in sorted(reference) if record_split(n, "cinc2017") == "val"]
    test = [n for n in sorted(reference) if record_split(n, "cinc2017") == "test"]
    k = RECALIBRATION_MIN_PER_CLASS
    names = [n for n in val if reference[n] == "A"][:k] + [n for n in val if reference[n] == "N"][:k] + test[:3]
    folder = tmp_path / "cinc2017"
    _link(data_dir / "cinc2017", folder, names, ("hea", "mat"))
    (folder / "REFERENCE.csv").write_text("".join(f"{n},{reference[n]}\n" for n in names))
    report = evaluate_folder(folder, "cinc2017", _Recorder(), tmp_path / "r.json", None, split="test", progress=False)
    calibration = report["record_calibration"]
    assert report["records"] == 3 and calibration["in_sample"] == "no"
    assert calibration["fitted_on"]["split"] == "val" and calibration["fitted_on"]["n"] <= 2 * k
    assert calibration["recalibrated_held_out"]["n"] == report["held_out"]["n"]
    skipped = evaluate_folder(folder, "cinc2017", _Recorder(), tmp_path / "s.json", None, split="test",
                              recalibrate=False, progress=False)
    assert skipped["record_calibration"]["method"] is None and skipped["ece"] == report["ece"]


def test_record_calibration_recovers_a_platt_map() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(-2.0, 2.5, 4000)
    y = (rng.random(z.size) < expit(1.5 * z + 0.7)).astype(np.int64)
    fitted = RecordCalibration.fit(expit(z), y)
    assert fitted.a == pytest.approx(1.5, abs=0.15) and fitted.b == pytest.approx(0.7, abs=0.15)
    assert fitted(float(expit(0.0))) == pytest.approx(float(expit(fitted.b)))
    with pytest.raises(ModelError, match="at least"):
        RecordCalibration.fit(np.full(50, 0.2), np.r_[np.ones(RECALIBRATION_MIN_PER_CLASS - 1), np.zeros(41)])


def test_record_score_is_the_mean_of_the_top_three_windows() -> None:
    assert aggregate(np.array([0.1, 0.9, 0.2, 0.8, 0.7])) == pytest.approx(0.8)
    assert aggregate(np.array([0.4])) == pytest.approx(0.4)
    assert aggregate(np.array([])) is None


def test_format_is_inferred_from_the_folder(data_dir: Path, tmp_path: Path) -> None:
    assert infer_format(data_dir / "cinc2017") == "cinc2017"
    assert infer_format(data_dir / "mitdb") == "mitdb"
    with pytest.raises(ModelError, match="format"):
        infer_format(tmp_path)
