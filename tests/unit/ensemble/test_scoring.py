"""The window scorer serves zoo models through one batched predict call and gates what it cannot score."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from ensemble.errors import EnsembleError
from ensemble.latency import LatencyModel
from ensemble.scoring import ServingPlan, WindowScorer, select_served
from models.data import mitdb_windows
from models.serving import load_rr_af
from models.zoo import ModelBatch, ServedModel, load_zoo
from models.zoo.select import validation_auc


@pytest.fixture(scope="module")
def zoo() -> list[ServedModel]:
    return load_zoo()


@pytest.fixture(scope="module")
def windows(data_dir: Path) -> list[np.ndarray]:
    """Six clean 10-s windows of record 201: sinus rhythm first, then atrial fibrillation."""
    all_windows = [w for w in mitdb_windows(data_dir, "201", 10.0, 10.0) if not w.straddles_change]
    sinus = [w.signal_mv for w in all_windows if not w.af][:3]
    af = [w.signal_mv for w in all_windows if w.af][10:13]
    return sinus + af


class _Spy:
    """Counts predict calls of a served model."""

    def __init__(self, model: ServedModel) -> None:
        self.model = model
        self.name, self.version, self.contract = model.name, model.version, model.contract
        self.calls: list[int] = []

    def predict(self, batch: ModelBatch) -> np.ndarray:
        self.calls.append(len(batch))
        return self.model.predict(batch)


def test_the_best_ten_second_model_is_served(zoo: list[ServedModel]) -> None:
    served = select_served(zoo, window_s=10.0, leads=2)
    assert all(m.contract.window_s <= 10.0 for m in served)
    assert served[-1].contract.leads == 1
    scorer = WindowScorer.from_zoo(zoo, window_s=10.0)
    assert scorer.model is served[0]
    assert scorer.model_ids == (served[0].model_id,)
    best_auc = max(validation_auc(m) for m in zoo if m.contract.window_s == 10.0)
    assert validation_auc(served[0]) == best_auc


def test_windows_are_scored_in_one_batched_call(zoo: list[ServedModel], windows: list[np.ndarray]) -> None:
    spy = _Spy(select_served(zoo, window_s=10.0)[0])
    verdicts = WindowScorer(spy).score(windows, 250.0)
    assert spy.calls == [len(windows)]
    assert all(v.state == "ok" and v.models == (spy.model.model_id,) for v in verdicts)
    risks = np.array([v.risk for v in verdicts])
    assert np.all((risks >= 0) & (risks <= 1))
    assert risks[3:].min() > risks[:3].max()  # AF windows above sinus rhythm


def test_gaps_flat_leads_and_missing_leads(zoo: list[ServedModel], windows: list[np.ndarray]) -> None:
    scorer = WindowScorer.from_zoo(zoo, window_s=10.0)
    gap = windows[0].copy()
    gap[:, 100:600] = np.nan
    flat = np.zeros_like(windows[0])
    one_lead = windows[4][:1]
    verdicts = scorer.score([gap, flat, windows[4], one_lead], 250.0)
    assert [v.state for v in verdicts] == ["unscorable", "unscorable", "ok", "ok"]
    assert verdicts[0].reason.startswith("gap") and verdicts[1].reason == "flat-line"
    assert verdicts[3].models[0] == scorer.models[-1].model_id  # one-lead windows go to the one-lead model
    assert verdicts[3].risk is not None and verdicts[3].risk > 0.5


def test_thirty_second_worker_can_serve_thirty_second_models(zoo: list[ServedModel], data_dir: Path) -> None:
    scorer = WindowScorer.from_zoo(zoo, window_s=30.0)
    window = next(w for w in mitdb_windows(data_dir, "201", 30.0, 30.0) if w.af and not w.straddles_change)
    (verdict,) = scorer.score([window.signal_mv], 250.0)
    assert verdict.state == "ok" and verdict.risk is not None and verdict.risk > 0.5


def test_the_legacy_rr_scorer_still_works(windows: list[np.ndarray]) -> None:
    scorer = WindowScorer(load_rr_af())
    verdicts = scorer.score(windows, 250.0)
    assert scorer.model_ids == ("rr-af@1",)
    assert all(v.state == "ok" and v.models == ("rr-af@1",) for v in verdicts)


def _ensemble(zoo: list[ServedModel]) -> list[ServedModel]:
    by_id = {m.model_id: m for m in zoo}
    return [by_id[i] for i in ("rr-af@1", "resnet1d-w8d3-2l-10s@1", "resnet1d-w16d4-rr-2l-10s@1")]


def test_a_member_that_would_miss_the_deadline_is_skipped_and_named(
    zoo: list[ServedModel], windows: list[np.ndarray]
) -> None:
    members = _ensemble(zoo)
    scorer = WindowScorer(ServingPlan.of(members), latency=LatencyModel.from_models(members))
    now = time.time()
    on_time = scorer.score(windows, 250.0, [now + 60.0] * len(windows))
    late = scorer.score(windows, 250.0, [now - 1.0] * len(windows))
    ids = tuple(m.model_id for m in members)
    assert all(v.models == ids and not v.partial for v in on_time)
    for v in late:  # the first member always runs; the others are dropped and named
        assert v.state == "ok" and v.models == ids[:1] and v.skipped == ids[1:] and v.partial
    # a batch is published after its last member: the window late already gets every member that runs for
    # the others (skipping them would not publish it any sooner), and a tight deadline binds the whole batch
    mixed = scorer.score(windows[:2], 250.0, [now + 60.0, now - 1.0])
    assert [v.models for v in mixed] == [ids, ids]
    frozen = WindowScorer(ServingPlan.of(members), latency=LatencyModel.from_models(members), clock=lambda: now)
    tight = frozen.score(windows[:2], 250.0, [now + 60.0, now + 1e-6])  # live, but no time for a second member
    assert all(v.models == ids[:1] and v.skipped == ids[1:] for v in tight)


def test_batched_and_one_at_a_time_give_the_same_scores(zoo: list[ServedModel], windows: list[np.ndarray]) -> None:
    scorer = WindowScorer(ServingPlan.of(_ensemble(zoo)))
    batched = scorer.score(windows, 250.0)
    single = [scorer.score([w], 250.0)[0] for w in windows]
    assert [v.models for v in batched] == [v.models for v in single]
    np.testing.assert_allclose([v.risk for v in batched], [v.risk for v in single], rtol=0, atol=1e-5)
    risks = np.array([v.risk for v in batched])
    assert risks[3:].min() > risks[:3].max()  # the ensemble still ranks AF above sinus rhythm


def test_a_plan_is_checked_against_its_combiner(zoo: list[ServedModel]) -> None:
    members = _ensemble(zoo)
    plan = ServingPlan.of(members)
    with pytest.raises(EnsembleError, match="combiner members"):
        ServingPlan(tuple(members[:2]), plan.combiner)
