"""Folder evaluation on small real subsets: the JSON contract, the figure, the gate's verdict on noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models import ModelError
from models.evaluate import aggregate, evaluate_folder, infer_format, pick_model
from models.zoo import ServedModel, load_zoo

POSITIVE = ("A00004", "A00015", "A00067", "A00087")
NEGATIVE = ("A00002", "A00006", "A00012", "A00014", "A00008", "A00013", "A00017", "A00020")
NOISY = ("A00022", "A00034", "A00125", "A00196", "A00201", "A00445", "A00585", "A00591")
CONTRACT = {"records", "scored", "unscorable", "roc_auc", "pr_auc", "sens_at_spec95", "ece", "models"}


@pytest.fixture(scope="module")
def zoo() -> list[ServedModel]:
    return load_zoo()


def _link(source: Path, target: Path, names: tuple[str, ...], exts: tuple[str, ...]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        for ext in exts:
            (target / f"{name}.{ext}").symlink_to(source / f"{name}.{ext}")


@pytest.fixture(scope="module")
def cinc_report(data_dir: Path, zoo: list[ServedModel], tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("eval")
    folder = root / "cinc2017"
    names = POSITIVE + NEGATIVE + NOISY
    _link(data_dir / "cinc2017", folder, names, ("hea", "mat"))
    labels = dict.fromkeys(POSITIVE, "A") | dict.fromkeys(NEGATIVE[:4], "N") | dict.fromkeys(NEGATIVE[4:], "O")
    labels |= dict.fromkeys(NOISY, "~")
    (folder / "REFERENCE.csv").write_text("".join(f"{n},{labels[n]}\n" for n in names))
    report = evaluate_folder(folder, "cinc2017", zoo, root / "r.json", root / "r.png", beds=8, progress=False)
    report["_paths"] = (root / "r.json", root / "r.png")
    return report


def test_cinc_report_follows_the_contract(cinc_report: dict, zoo: list[ServedModel]) -> None:
    json_path, png_path = cinc_report.pop("_paths")
    assert CONTRACT <= set(cinc_report)
    assert json.loads(json_path.read_text()) == cinc_report
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cinc_report["records"] == 20
    assert cinc_report["scored"] + cinc_report["unscorable"] == 20
    assert cinc_report["models"] == [pick_model(zoo, "cinc2017", 8).model_id]
    assert cinc_report["n_pos"] == 4 and cinc_report["n"] <= 12
    assert cinc_report["roc_auc"] is not None and cinc_report["roc_auc"] > 0.8
    for key in ("pr_auc", "sens_at_spec95", "ece"):
        assert 0.0 <= cinc_report[key] <= 1.0
    assert cinc_report["noisy"]["records"] == len(NOISY)
    assert 0 <= cinc_report["noisy"]["unscorable"] <= len(NOISY)
    assert cinc_report["window"]["n"] >= cinc_report["n"]


@pytest.mark.xfail(
    strict=True,
    reason="features' quality gate passes ~80 % of the 10-s windows of CinC '~' records (9 % of those records "
    "are turned away entirely); a stricter noise check belongs in features/quality.py",
)
def test_noisy_records_are_unscorable_in_the_majority(cinc_report: dict) -> None:
    assert cinc_report["noisy"]["unscorable"] > len(NOISY) / 2


def test_mitdb_records_and_windows(data_dir: Path, zoo: list[ServedModel], tmp_path: Path) -> None:
    folder = tmp_path / "mitdb"
    _link(data_dir / "mitdb", folder, ("100", "201"), ("hea", "dat", "atr"))
    report = evaluate_folder(folder, "mitdb", zoo, tmp_path / "m.json", None, beds=64, progress=False)
    assert CONTRACT <= set(report)
    assert (report["records"], report["scored"], report["unscorable"]) == (2, 2, 0)
    assert report["roc_auc"] == 1.0 and report["n_pos"] == 1
    assert report["window"]["n_pos"] >= 30 and report["window"]["roc_auc"] > 0.9
    assert report["selection"]["latency_ms_batch1"] <= report["selection"]["budget_ms_per_window"]
    assert report["held_out"]["n"] == 1  # record 100 is in the test split, 201 in train
    assert not (tmp_path / "m.png").exists()


def test_record_score_is_the_mean_of_the_top_three_windows() -> None:
    assert aggregate(np.array([0.1, 0.9, 0.2, 0.8, 0.7])) == pytest.approx(0.8)
    assert aggregate(np.array([0.4])) == pytest.approx(0.4)
    assert aggregate(np.array([])) is None


def test_format_is_inferred_from_the_folder(data_dir: Path, tmp_path: Path) -> None:
    assert infer_format(data_dir / "cinc2017") == "cinc2017"
    assert infer_format(data_dir / "mitdb") == "mitdb"
    with pytest.raises(ModelError, match="format"):
        infer_format(tmp_path)
