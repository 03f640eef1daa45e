"""The selector: candidates, the validation table and its objective, exact and beam search, baselines."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ensemble.errors import EnsembleError
from ensemble.selector import (
    NoFeasibleEnsemble,
    Selection,
    ValidationTable,
    beam_search,
    best_of_random,
    best_single,
    candidates,
    exhaustive_search,
    greedy_by_accuracy,
    greedy_by_latency,
    search_space_size,
    select,
)
from models.serving import DEFAULT_ARTIFACT_DIR
from models.zoo import Predictions, ServedModel, load_zoo, read_predictions

# -- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo() -> list[ServedModel]:
    return load_zoo()


@pytest.fixture(scope="module")
def zoo10(zoo: list[ServedModel]) -> list[ServedModel]:
    return candidates(zoo, 10.0, 2)


@pytest.fixture(scope="module")
def table10(zoo10: list[ServedModel]) -> ValidationTable:
    return ValidationTable.from_models(zoo10, window_s=10.0)


def synthetic_table(n_models: int, seed: int, n_per_dataset: int = 300) -> ValidationTable:
    """Weak models (single ROC-AUC 0.75-0.9) that see the label, shared noise and their own noise; every fourth
    is a "two-lead" model with no predictions on the first data set."""
    rng = np.random.default_rng(seed)
    n = 2 * n_per_dataset
    labels = (rng.random(n) < 0.2).astype(np.int8)
    datasets = np.repeat(["cinc", "mitdb"], n_per_dataset)
    shared = rng.normal(size=(n, 4))
    logits = np.empty((n, n_models))
    for j in range(n_models):
        strength = rng.uniform(0.3, 1.2)
        mix = rng.normal(size=4) * rng.uniform(0.3, 1.2)
        logits[:, j] = strength * (2 * labels - 1) + shared @ mix + rng.normal(scale=rng.uniform(1.0, 2.5), size=n)
        if j % 4 == 3:
            logits[:n_per_dataset, j] = np.nan
    temperatures = rng.uniform(0.7, 1.5, size=n_models)
    return ValidationTable([f"m{j:02d}@1" for j in range(n_models)], logits, labels, datasets,
                           temperatures=temperatures)


def additive_latency(costs: dict[str, float], base_ms: float = 10.0) -> Callable[[tuple[str, ...]], float]:
    """Monotone: a fixed cost, the sum of the members' costs, plus a contention term on the largest."""
    return lambda members: base_ms + sum(costs[m] for m in members) + 0.5 * max(costs[m] for m in members)


def random_costs(ids: Sequence[str], seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {m: float(rng.uniform(1.0, 10.0)) for m in ids}


def oracle_objectives(table: ValidationTable) -> dict[tuple[str, ...], float]:
    """Every subset's objective, recomputed with scikit-learn."""
    out = {}
    for k in range(1, len(table.members) + 1):
        for members in itertools.combinations(table.members, k):
            z = table.combined_logits(members)
            out[members] = float(np.mean([roc_auc_score(table.labels[table.datasets == d], z[table.datasets == d])
                                          for d in ("cinc", "mitdb")]))
    return out


def brute_force(
    objectives: dict[tuple[str, ...], float], latency: Callable[[tuple[str, ...]], float], budget_ms: float
) -> tuple[tuple[str, ...], float]:
    """The oracle: the best subset within the budget, ties to the cheaper, then the smaller."""
    feasible = [(-round(v, 12), latency(m), len(m), m) for m, v in objectives.items() if latency(m) <= budget_ms]
    best = min(feasible)
    return best[3], objectives[best[3]]


# -- candidates ------------------------------------------------------------------------------------


def test_candidates_follow_the_stream_contract(zoo: list[ServedModel]) -> None:
    ten_two = candidates(zoo, 10.0, 2)
    assert len(ten_two) == 18
    assert all(m.contract.window_s == 10.0 for m in ten_two)
    ten_one = candidates(zoo, 10.0, 1)
    assert len(ten_one) == 13 and all(m.contract.leads == 1 for m in ten_one)
    assert len(candidates(zoo, 30.0, 2)) == len(zoo)
    with pytest.raises(EnsembleError):
        candidates(zoo, 10.0, 0)


# -- the validation table --------------------------------------------------------------------------


def test_objective_is_the_mean_over_data_sets_of_the_combined_roc_auc(table10: ValidationTable) -> None:
    rng = np.random.default_rng(0)
    subsets = [tuple(rng.choice(table10.members, k, replace=False)) for k in (1, 2, 3, 5, 8, 15) for _ in range(3)]
    for members in subsets:
        z = table10.combined_logits(members)
        expected = np.mean([roc_auc_score(table10.labels[table10.datasets == d], z[table10.datasets == d])
                            for d in ("cinc", "mitdb")])
        assert table10.objective(members) == pytest.approx(expected, abs=1e-12)


def test_windows_no_member_scored_count_as_one_half(table10: ValidationTable) -> None:
    """Two-lead models have no CinC predictions: alone, their CinC ROC-AUC is exactly 0.5."""
    two_lead = ("resnet1d-w16d4-rr-2l-10s@1",)
    mitdb = table10.datasets == "mitdb"
    mitdb_auc = roc_auc_score(table10.labels[mitdb], table10.combined_logits(two_lead)[mitdb])
    assert table10.objective(two_lead) == pytest.approx((0.5 + mitdb_auc) / 2)
    assert table10.metrics(two_lead)["cinc"]["coverage"] == 0.0


def test_table_joins_the_validation_windows_of_the_real_zoo(table10: ValidationTable, zoo10: list[ServedModel]) -> None:
    # 10-s windows: 1,646 CinC + 1,138 MIT-BIH validation windows (models/SPLITS.md), every model on its data sets
    assert table10.calibrated.shape == (1646 + 1138, 18)
    assert table10.split == "val"
    for j, model in enumerate(zoo10):
        on_cinc = table10.present[table10.datasets == "cinc", j]
        assert on_cinc.all() if model.contract.leads == 1 else not on_cinc.any()
        assert table10.temperatures[j] == pytest.approx(model.temperature)


def test_cached_objective_is_not_recomputed(table10: ValidationTable) -> None:
    members = ("rr-af@1", "resnet1d-w16d4-rr-1l-10s@1")
    first = table10.objective(members)
    count = table10.evaluations
    assert table10.objective(tuple(reversed(members))) == first
    assert table10.evaluations == count
    with pytest.raises(EnsembleError, match="not in the table"):
        table10.objective(("nope@1",))
    with pytest.raises(EnsembleError, match="at least one"):
        table10.objective(())


def _predictions(rows: list[tuple[str, str, str, int, int, float]], window_s: int = 10) -> Predictions:
    """Rows of (dataset, split, record, end, label, logit)."""
    ds, split, rec, end, label, logit = (np.array(c) for c in zip(*rows, strict=True))
    return Predictions(
        dataset=ds, split=split, record=rec, start=end.astype(np.int64) - window_s * 250, end=end.astype(np.int64),
        label=label.astype(np.int8), probability=np.zeros(len(rows), np.float32), logit=logit.astype(np.float32),
    )


def test_join_on_dataset_record_and_end() -> None:
    a = _predictions([("cinc", "val", "A1", 2500, 1, 2.0), ("cinc", "val", "A2", 2500, 0, -1.0),
                      ("mitdb", "val", "100", 2500, 0, -2.0), ("mitdb", "val", "100", 5000, 1, 1.0),
                      ("cinc", "test", "A9", 2500, 1, 5.0)])
    b = _predictions([("mitdb", "val", "100", 5000, 1, 3.0), ("mitdb", "val", "100", 2500, 0, -1.0)])
    table = ValidationTable.from_predictions({"a@1": a, "b@1": b}, {"a@1": 2.0, "b@1": 1.0})
    assert table.calibrated.shape == (4, 2)
    assert table.present[:, 1].sum() == 2 and table.present[:, 0].all()
    order = np.lexsort((table.labels, table.datasets))
    np.testing.assert_array_equal(table.datasets[order], ["cinc", "cinc", "mitdb", "mitdb"])
    # the joined MIT-BIH window ending at 5000 holds both models' calibrated logits
    row = int(np.flatnonzero((table.datasets == "mitdb") & (table.labels == 1))[0])
    np.testing.assert_allclose(table.calibrated[row], [0.5, 3.0])

    clash = _predictions([("mitdb", "val", "100", 5000, 0, 3.0)])
    with pytest.raises(EnsembleError, match="disagrees"):
        ValidationTable.from_predictions({"a@1": a, "c@1": clash}, {"a@1": 1.0, "c@1": 1.0})
    twice = _predictions([("mitdb", "val", "100", 5000, 1, 3.0), ("mitdb", "val", "100", 5000, 1, 2.0)])
    with pytest.raises(EnsembleError, match="twice"):
        ValidationTable.from_predictions({"a@1": a, "d@1": twice}, {"a@1": 1.0, "d@1": 1.0})
    with pytest.raises(EnsembleError, match="temperature"):
        ValidationTable.from_predictions({"a@1": a}, {})


def test_window_s_keeps_the_windows_of_that_stream() -> None:
    ten = _predictions([("mitdb", "val", "100", 2500, 0, -1.0), ("mitdb", "val", "100", 7500, 1, 1.0),
                        ("mitdb", "val", "100", 10000, 0, -1.0)])
    thirty = _predictions([("mitdb", "val", "100", 7500, 1, 2.0), ("mitdb", "val", "100", 10000, 0, -2.0)],
                          window_s=30)
    both = {"ten@1": ten, "thirty@1": thirty}
    temps = {"ten@1": 1.0, "thirty@1": 1.0}
    assert ValidationTable.from_predictions(both, temps).calibrated.shape[0] == 3
    assert ValidationTable.from_predictions(both, temps, window_s=30.0).calibrated.shape[0] == 2
    assert ValidationTable.from_predictions(both, temps, window_s=10.0).calibrated.shape[0] == 3


def test_selection_never_reads_the_test_split(zoo10: list[ServedModel]) -> None:
    """Poison every test row (labels flipped, logits scrambled): the validation table and the choice stay put."""
    ids = [m.model_id for m in zoo10]
    clean = {m.model_id: read_predictions(DEFAULT_ARTIFACT_DIR / str(m.card.predictions_file)) for m in zoo10}
    temps = {m.model_id: m.temperature for m in zoo10}
    rng = np.random.default_rng(0)
    poisoned = {}
    for model_id, p in clean.items():
        test = p.split == "test"
        logit = p.logit.copy()
        logit[test] = rng.normal(scale=20.0, size=int(test.sum())).astype(np.float32)
        label = p.label.copy()
        label[test] = 1 - label[test]
        poisoned[model_id] = Predictions(p.dataset, p.split, p.record, p.start, p.end, label, p.probability, logit)
    costs = {m.model_id: m.card.latency_ms[1] for m in zoo10}
    latency = additive_latency(costs)
    results = []
    for preds in (clean, poisoned):
        table = ValidationTable.from_predictions(preds, temps, window_s=10.0)
        picks = [select(ids, table.objective, latency, b) for b in (12, 15, 40)]
        results.append((table.calibrated, table.labels, picks))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[0][2] == results[1][2]
    # the poison is real: had the test rows been read, the figures would differ
    test_clean = ValidationTable.from_predictions(clean, temps, split="test", window_s=10.0)
    test_poisoned = ValidationTable.from_predictions(poisoned, temps, split="test", window_s=10.0)
    assert abs(test_clean.objective(ids) - test_poisoned.objective(ids)) > 0.3


# -- exact search ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exhaustive_search_finds_the_brute_force_optimum(seed: int) -> None:
    table = synthetic_table(8, seed)
    ids = list(table.members)
    latency = additive_latency(random_costs(ids, seed))
    objectives = oracle_objectives(table)
    for budget in (14.0, 20.0, 30.0, 60.0, 1000.0):
        expected_members, expected_objective = brute_force(objectives, latency, budget)
        for found in (exhaustive_search(ids, table.objective, latency, budget),
                      select(ids, table.objective, latency, budget)):
            assert found.members == expected_members
            assert found.objective == pytest.approx(expected_objective, abs=1e-12)
            assert found.predicted_p99_ms <= budget
            assert found.method == "exhaustive"


def test_hand_made_zoo_with_a_known_optimum() -> None:
    """``a`` and ``b`` each separate half the windows perfectly and say nothing about the other half;
    ``c`` is decent everywhere but expensive; ``d`` is cheap and always says 0 (p = 0.5)."""
    labels = np.tile([1, 0, 0, 0], 50).astype(np.int8)
    n = labels.size
    datasets = np.repeat(["cinc", "mitdb"], n // 2)
    half = np.arange(n) % 8 < 4
    sign = np.where(labels == 1, 3.0, -3.0)
    rng = np.random.default_rng(0)
    logits = np.column_stack([
        np.where(half, sign, np.nan),
        np.where(~half, sign, np.nan),
        sign / 3 + rng.normal(scale=1.5, size=n),
        np.zeros(n),
    ])
    table = ValidationTable(["a@1", "b@1", "c@1", "d@1"], logits, labels, datasets)
    cost = {"a@1": 2.0, "b@1": 3.0, "c@1": 20.0, "d@1": 0.5}
    latency = lambda ms: sum(cost[m] for m in ms)  # noqa: E731
    assert table.objective(("a@1", "b@1")) == 1.0
    assert table.objective(("c@1",)) < 1.0
    best = select(table.members, table.objective, latency, 10.0)
    assert best.members == ("a@1", "b@1") and best.objective == 1.0 and best.predicted_p99_ms == 5.0
    # a, b and d are perfect too (d only halves the logits), but dearer: the tie goes to the cheaper pair
    assert table.objective(("a@1", "b@1", "d@1")) == 1.0
    assert select(table.members, table.objective, latency, 100.0).members == ("a@1", "b@1")
    # room for one of a, b: they tie, a is cheaper; a + d ties with a too and costs more
    assert table.objective(("a@1",)) == table.objective(("b@1",)) == table.objective(("a@1", "d@1"))
    assert select(table.members, table.objective, latency, 3.0).members == ("a@1",)
    assert select(table.members, table.objective, latency, 1.0).members == ("d@1",)
    with pytest.raises(NoFeasibleEnsemble, match="0.5 ms"):
        select(table.members, table.objective, latency, 0.4)


def test_exact_search_evaluates_exactly_what_fits() -> None:
    table = synthetic_table(12, 3)
    ids = list(table.members)
    latency = additive_latency(random_costs(ids, 3))
    budget = 25.0
    evaluated: list[tuple[str, ...]] = []
    predicted: set[tuple[str, ...]] = set()

    def objective(members: tuple[str, ...]) -> float:
        evaluated.append(members)
        return table.objective(members)

    def predict(members: tuple[str, ...]) -> float:
        predicted.add(members)
        return latency(members)

    exhaustive_search(ids, objective, predict, budget)
    feasible = {m for k in range(1, 13) for m in itertools.combinations(ids, k) if latency(m) <= budget}
    assert sorted(evaluated) == sorted(feasible)  # every subset that fits, once, and nothing else
    assert len(predicted) < search_space_size(12) / 5


def test_a_member_that_breaks_every_pair_is_dropped_from_the_subtree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Monotone pruning: once ``S + x`` is over the budget, no superset of ``S + x`` is predicted."""
    monkeypatch.setattr("ensemble.selector._SUBTREE_CHECK", 10**6)  # isolate it from the whole-subtree check
    table = synthetic_table(8, 2)
    ids = list(table.members)
    costs = dict.fromkeys(ids, 1.0)
    costs["m05@1"] = 9.5  # alone it fits, with anything else it does not
    predicted: list[tuple[str, ...]] = []

    def predict(members: tuple[str, ...]) -> float:
        predicted.append(members)
        return sum(costs[m] for m in members)

    found = exhaustive_search(ids, table.objective, predict, 10.0)
    assert "m05@1" not in found.members or found.members == ("m05@1",)
    with_x = [m for m in predicted if "m05@1" in m]
    assert with_x and max(len(m) for m in with_x) == 2


def test_everything_fits_needs_few_latency_predictions() -> None:
    table = synthetic_table(10, 4)
    calls = []

    def latency(members: tuple[str, ...]) -> float:
        calls.append(members)
        return float(len(members))

    found = exhaustive_search(table.members, table.objective, latency, 100.0)
    assert found.evaluated == 2**10 - 1
    assert len(set(calls)) < 40  # one per candidate, one per checked subtree, the winner


def test_max_members_is_respected() -> None:
    table = synthetic_table(9, 5)
    latency = additive_latency(random_costs(table.members, 5))
    for search in (exhaustive_search, beam_search, greedy_by_accuracy, greedy_by_latency, best_of_random):
        found = search(table.members, table.objective, latency, 1000.0, max_members=2)
        assert 1 <= len(found.members) <= 2
    assert search_space_size(9, 2) == 9 + 36
    assert select(table.members, table.objective, latency, 1000.0, max_members=2).method == "exhaustive"


# -- beyond the exact limit ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [10, 13])
def test_beam_search_is_close_to_the_optimum_on_18_models(seed: int) -> None:
    table = synthetic_table(18, seed, n_per_dataset=200)
    ids = list(table.members)
    latency = additive_latency(random_costs(ids, seed))
    for budget in (25.0, 45.0):  # room for about 3 and 6 members
        optimum = exhaustive_search(ids, table.objective, latency, budget)
        chosen = select(ids, table.objective, latency, budget)  # 2**18 subsets: beyond the exact limit
        assert chosen.method == "beam"
        assert chosen.predicted_p99_ms <= budget
        assert chosen.objective <= optimum.objective + 1e-12
        assert chosen.objective >= optimum.objective - 0.005, (chosen, optimum)
        for random_seed in range(5):
            assert chosen.objective >= best_of_random(ids, table.objective, latency, budget, seed=random_seed).objective
    assert len(optimum.members) >= 4 and chosen.evaluated < optimum.evaluated / 4
    assert optimum.objective > best_single(ids, table.objective, latency, budget).objective + 0.05


def eager_beam_search(ids: Sequence[str], objective: Callable[[tuple[str, ...]], float],
                      latency: Callable[[tuple[str, ...]], float], budget: float, max_members: int | None = None,
                      beam_width: int = 32, seed: int = 0) -> tuple[str, ...]:
    """The beam and local search as first written: every subset it meets is predicted, nothing is lazy."""
    n, size = len(ids), len(ids) if max_members is None else min(max_members, len(ids))

    def names(s: tuple[int, ...]) -> tuple[str, ...]:
        return tuple(ids[i] for i in s)

    def feasible(s: tuple[int, ...]) -> bool:
        return 0 < len(s) <= size and latency(names(s)) <= budget

    def key(s: tuple[int, ...]) -> tuple[float, float, int, tuple[str, ...]]:
        return -round(objective(names(s)), 12), latency(names(s)), len(s), names(s)

    def add(s: tuple[int, ...], i: int) -> tuple[int, ...]:
        return tuple(sorted((*s, i)))

    beam = sorted([(i,) for i in range(n) if feasible((i,))], key=key)[:beam_width]
    best, seen = min(beam, key=key), set(beam)
    while beam and len(beam[0]) < size:
        children = []
        for s in beam:
            for i in range(n):
                t = add(s, i)
                if i not in s and t not in seen:
                    seen.add(t)
                    if feasible(t):
                        children.append(t)
        beam = sorted(children, key=key)[:beam_width]
        best = min([best, *beam], key=key)
    rng, randoms = np.random.default_rng(seed), []
    for _ in range(100):  # as ensemble.selector._random_subsets
        target, s = int(rng.integers(1, size + 1)), ()
        for i in rng.permutation(n):
            if feasible(add(s, int(i))):
                s = add(s, int(i))
                if len(s) == target:
                    break
        if s:
            randoms.append(s)
    for current in [best, min(randoms, key=key)]:
        while True:
            outside = [i for i in range(n) if i not in current]
            moves = [add(current, i) for i in outside]
            moves += [tuple(j for j in current if j != i) for i in current] if len(current) > 1 else []
            moves += [add(tuple(j for j in current if j != i), o) for i in current for o in outside]
            step = min([current, *[t for t in moves if feasible(t)]], key=key)
            best = min(best, step, key=key)
            if step == current:
                break
            current = step
    return names(best)


@pytest.mark.parametrize("seed", [10, 13, 21])
def test_lazy_beam_search_chooses_what_the_eager_one_does(seed: int) -> None:
    """Feasibility down the objective ranking and the monotone shortcuts save predictions, nothing else."""
    table = synthetic_table(16, seed, n_per_dataset=150)
    ids = list(table.members)
    latency = additive_latency(random_costs(ids, seed))
    for budget, max_members in ((18.0, None), (30.0, None), (45.0, 5), (1e9, None)):
        predicted: set[tuple[str, ...]] = set()

        def predict(members: tuple[str, ...], seen: set[tuple[str, ...]] = predicted) -> float:
            seen.add(members)
            return latency(members)

        chosen = beam_search(ids, table.objective, predict, budget, max_members=max_members)
        assert chosen.members == eager_beam_search(ids, table.objective, latency, budget, max_members)
        if budget > 1e6:  # everything fits: the eager search predicted each of the 2,400+ subsets it ranked
            assert len(predicted) < 30 < 2000 < chosen.evaluated


def test_beam_search_predicts_nothing_monotone_latency_answers() -> None:
    table = synthetic_table(18, 10, n_per_dataset=200)
    ids = list(table.members)
    latency = additive_latency(random_costs(ids, 10))
    predicted: list[tuple[tuple[str, ...], bool]] = []

    def predict(members: tuple[str, ...]) -> float:
        predicted.append((members, latency(members) <= 45.0))
        return latency(members)

    beam_search(ids, table.objective, predict, 45.0)
    assert len({m for m, _ in predicted}) == len(predicted)  # each once
    for k, (members, _) in enumerate(predicted):  # never inside a subset known to fit, nor around one over
        assert not any(ok and set(members) <= set(m) for m, ok in predicted[:k])
        assert not any(not ok and set(m) <= set(members) for m, ok in predicted[:k])
    everything: set[tuple[str, ...]] = set()
    found = beam_search(ids, table.objective, lambda m: everything.add(m) or latency(m), 1e9)
    assert found.evaluated > 2000  # subsets ranked by objective ...
    assert found.predicted == len(everything) < 25  # ... but all 18 fit together: only ties and the winner are


def test_auto_switches_to_beam_search_beyond_the_limit() -> None:
    table = synthetic_table(8, 6)
    latency = additive_latency(random_costs(table.members, 6))
    assert select(table.members, table.objective, latency, 1000.0).method == "exhaustive"
    assert select(table.members, table.objective, latency, 1000.0, exact_max_subsets=100).method == "beam"
    with pytest.raises(EnsembleError, match="unknown selection method"):
        select(table.members, table.objective, latency, 1000.0, method="greedy")  # type: ignore[arg-type]


# -- baselines -------------------------------------------------------------------------------------


def test_every_strategy_respects_the_budget_and_none_beats_the_exact_optimum() -> None:
    table = synthetic_table(10, 7)
    ids = list(table.members)
    latency = additive_latency(random_costs(ids, 7))
    for budget in (14.0, 22.0, 35.0):
        optimum = exhaustive_search(ids, table.objective, latency, budget)
        results: list[Selection] = [
            beam_search(ids, table.objective, latency, budget),
            best_single(ids, table.objective, latency, budget),
            greedy_by_accuracy(ids, table.objective, latency, budget),
            greedy_by_latency(ids, table.objective, latency, budget),
            best_of_random(ids, table.objective, latency, budget),
        ]
        for r in results:
            assert r.predicted_p99_ms == pytest.approx(latency(r.members)) and r.predicted_p99_ms <= budget
            assert r.objective == pytest.approx(table.objective(r.members))
            assert r.objective <= optimum.objective + 1e-12


def test_baselines_follow_their_rules() -> None:
    table = synthetic_table(8, 8)
    ids = list(table.members)
    costs = random_costs(ids, 8)
    latency = additive_latency(costs)
    singles = {m: table.objective((m,)) for m in ids}
    top = max(ids, key=lambda m: (singles[m], -costs[m]))
    cheapest = min(ids, key=lambda m: costs[m])
    assert best_single(ids, table.objective, latency, 1000.0).members == (top,)
    acc = greedy_by_accuracy(ids, table.objective, latency, 1000.0)
    assert top in acc.members and acc.objective >= singles[top]
    lat = greedy_by_latency(ids, table.objective, latency, 1000.0)
    assert cheapest in lat.members
    one = best_of_random(ids, table.objective, latency, 1000.0, seed=3)
    assert one == best_of_random(ids, table.objective, latency, 1000.0, seed=3)  # seeded


def test_ties_go_to_the_cheaper_subset() -> None:
    rng = np.random.default_rng(9)
    labels = (rng.random(200) < 0.3).astype(np.int8)
    same = 2 * labels - 1 + rng.normal(size=200)
    logits = np.column_stack([same, same, rng.normal(size=200)])
    table = ValidationTable(["dear@1", "cheap@1", "noise@1"], logits, labels, np.repeat(["cinc", "mitdb"], 100))
    cost = {"dear@1": 5.0, "cheap@1": 1.0, "noise@1": 1.0}
    latency = lambda ms: sum(cost[m] for m in ms)  # noqa: E731
    for search in (exhaustive_search, beam_search, best_single, greedy_by_accuracy):
        assert search(table.members, table.objective, latency, 100.0).members == ("cheap@1",)


def test_invalid_arguments() -> None:
    table = synthetic_table(4, 0)
    latency = additive_latency(random_costs(table.members, 0))
    with pytest.raises(EnsembleError, match="no candidate"):
        select([], table.objective, latency, 10.0)
    with pytest.raises(EnsembleError, match="max_members"):
        select(table.members, table.objective, latency, 10.0, max_members=0)
    with pytest.raises(EnsembleError, match="NaN"):
        select(table.members, table.objective, lambda ms: float("nan"), 10.0)
    with pytest.raises(EnsembleError, match="shape"):
        ValidationTable(["a@1"], np.zeros((3, 2)), np.zeros(3), np.array(["cinc"] * 3))
    with pytest.raises(EnsembleError, match="both AF and non-AF"):
        ValidationTable(["a@1"], np.zeros((3, 1)), np.zeros(3), np.array(["cinc"] * 3))
