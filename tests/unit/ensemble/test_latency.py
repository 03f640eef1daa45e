"""The latency model: profiles, monotonicity, batching, staggering, saturation, against the real zoo."""

from __future__ import annotations

import math

import pytest

from ensemble.errors import EnsembleError
from ensemble.latency import BatchProfile, Costs, LatencyModel, Load, measure_feature_costs, measure_feature_ms
from models.zoo import ServedModel, load_zoo


@pytest.fixture(scope="module")
def zoo() -> list[ServedModel]:
    return load_zoo()


@pytest.fixture(scope="module")
def model(zoo: list[ServedModel]) -> LatencyModel:
    return LatencyModel.from_models(zoo)


def test_profile_interpolates_and_extrapolates_per_window() -> None:
    profile = BatchProfile({1: 1.0, 4: 2.5, 256: 64.0})
    assert profile(1) == 1.0
    assert profile(2) == pytest.approx(1.5)
    assert profile(512) == pytest.approx(128.0)  # past the largest: its per-window cost
    assert profile(0) == 0.0
    with pytest.raises(EnsembleError):
        BatchProfile({0: 1.0})


def test_latency_grows_with_members_and_beds(zoo: list[ServedModel], model: LatencyModel) -> None:
    ids = sorted(m.model_id for m in zoo if m.contract.window_s == 10.0)
    load = Load(128, phases=5)
    singles = {m: model.predict([m], load).p99_ms for m in ids}
    pair = model.predict(ids[:2], load).p99_ms
    assert pair >= max(singles[ids[0]], singles[ids[1]])  # adding a member never lowers it
    p99s = [model.predict(ids[:3], Load(b, phases=5)).p99_ms for b in (1, 16, 64, 256, 512)]
    assert p99s == sorted(p99s)


def test_aligned_beds_wait_longer_than_spread_ones(model: LatencyModel) -> None:
    members = ["resnet1d-w16d4-rr-2l-10s@1"]
    aligned = model.predict(members, Load(512, phases=1))
    spread = model.predict(members, Load(512, phases=5))
    assert aligned.p99_ms > 1.5 * spread.p99_ms
    assert aligned.utilisation == pytest.approx(spread.utilisation, rel=0.05)  # same work, worse timing


def test_batching_is_what_keeps_the_executor_up(zoo: list[ServedModel]) -> None:
    members = ["resnet1d-w16d4-rr-2l-10s@1", "resnet1d-w16d4-1l-10s@1"]
    batched = LatencyModel.from_models(zoo, Costs(max_batch=256))
    per_request = LatencyModel.from_models(zoo, Costs(max_batch=1))
    load = Load(1000, phases=5)
    assert batched.predict(members, load).stable
    assert batched.predict(members, load).utilisation < per_request.predict(members, load).utilisation


def test_a_load_beyond_capacity_is_unstable(model: LatencyModel) -> None:
    heavy = model.predict(["resnet1d-w24d6-1l-10s@1", "transformer-d32l2-2l-10s@1"], Load(5000, phases=5))
    assert not heavy.stable and math.isinf(heavy.p99_ms) and heavy.utilisation >= 1.0


def test_slowdown_is_counted(model: LatencyModel) -> None:
    members = ["resnet1d-w16d4-rr-2l-10s@1"]
    load = Load(256, phases=5)
    base = model.predict(members, load).p99_ms
    slow = LatencyModel(model.profiles, model.costs, {members[0]: 3.0}).predict(members, load).p99_ms
    assert slow > base


def test_unknown_models_and_bad_loads_are_refused(model: LatencyModel) -> None:
    with pytest.raises(EnsembleError, match="no latency profile"):
        model.predict(["nope@1"], Load(4))
    with pytest.raises(EnsembleError):
        Load(-1)
    with pytest.raises(EnsembleError):
        Costs(feature_ms=-1.0)


def test_feature_cost_is_measured() -> None:
    ms = measure_feature_ms(repeats=3)
    assert 0.05 < ms < 100
    fixed, per_window = measure_feature_costs(batch=8, repeats=4)
    assert fixed >= 0 and 0.01 < per_window < 100
    costs = Costs(feature_ms=per_window, feature_fixed_ms=fixed)
    assert costs.features_ms(8) == pytest.approx(fixed + 8 * per_window)
    with pytest.raises(EnsembleError):
        Costs(feature_fixed_ms=-0.5)


def test_the_transport_is_added_as_a_distribution(model: LatencyModel) -> None:
    """Upstream (measured) + executor + downstream (fixed + uniform fetch wait): the prediction is the
    distribution of the sum, compared here with a Monte Carlo of the same independent parts (16 beds: every
    score is published far from the previous one, so its fetch wait is independent of it)."""
    import numpy as np

    from ensemble.latency import Transport

    members = ["resnet1d-w16d4-rr-2l-10s@1"]
    load = Load(16, phases=5, spread_s=1.0)
    fixed = LatencyModel(model.profiles, model.costs, transport=Transport((0.0,), 0.0, 0.0)).predict(members, load)
    rng = np.random.default_rng(0)
    upstream = rng.gamma(4.0, 15.0, 5000)  # a skewed upstream, like the measured one
    transport = Transport.measured(upstream, downstream_ms=5.0, downstream_wait_ms=50.0, levels=64)
    assert transport.upstream_ms == tuple(sorted(transport.upstream_ms)) and len(transport.upstream_ms) == 64
    with_transport = LatencyModel(model.profiles, model.costs, transport=transport).predict(members, load)
    # executor part of each window at the fixed load is nearly constant: the sum's spread is the transport's
    executor = fixed.p50_ms
    sums = executor + upstream + 5.0 + rng.uniform(0.0, 50.0, upstream.size)
    assert with_transport.p50_ms == pytest.approx(np.percentile(sums, 50), rel=0.05)
    assert with_transport.p99_ms == pytest.approx(np.percentile(sums, 99), rel=0.05)
    assert with_transport.p99_ms > fixed.p99_ms + np.percentile(upstream, 90)
    assert with_transport.utilisation == fixed.utilisation  # the transport does not load the executor
    # a fixed transport is a plain shift
    shifted = LatencyModel(model.profiles, model.costs, transport=Transport((30.0,), 7.0)).predict(members, load)
    assert shifted.p99_ms == pytest.approx(fixed.p99_ms + 37.0)
    with pytest.raises(EnsembleError):
        Transport((5.0, 1.0))  # quantiles must ascend
    with pytest.raises(EnsembleError):
        Transport.measured([])


def test_a_score_right_behind_another_batch_waits_for_the_rest_of_the_fetch(model: LatencyModel) -> None:
    """The API consumer's fetch that returned the previous batch's scores is still held when a score follows
    less than one fetch wait later: that score waits for the rest of it, not for a uniform part of a whole
    one (what the bench measured: the windows that queued behind a batch also waited longer downstream)."""
    from ensemble.latency import Transport

    members = ["rr-af@1"]
    spaced = Load(16, phases=5, spread_s=1.0)  # a window every 312 ms, each alone
    close = Load(256, phases=5, spread_s=1.0)  # one every 19.5 ms, each alone: 39 % of a 50-ms wait
    for load, least_ms in ((spaced, 0.0), (close, 25.0)):  # 1 - 19.5 / 50 = 0.61 -> a half, in quarter steps
        fixed = LatencyModel(model.profiles, model.costs, transport=Transport((0.0,), 0.0)).predict(members, load)
        waiting = LatencyModel(model.profiles, model.costs,
                               transport=Transport((0.0,), 0.0, 50.0)).predict(members, load)
        assert fixed.batches_per_tick == pytest.approx(load.beds / 5)
        assert waiting.p50_ms - fixed.p50_ms == pytest.approx(least_ms + (50.0 - least_ms) / 2, abs=2.0)
        assert waiting.utilisation == fixed.utilisation


def test_windows_arriving_in_bunches_are_batched_together(model: LatencyModel) -> None:
    """1,000 spread beds whose windows reach the worker in 100-ms bunches: the executor batches each bunch
    (its first window alone, as soon as its own chunk is decoded; the other 19 together, once the bunch is),
    where one-by-one arrivals would mostly run alone."""
    members = ["rr-af@1", "resnet1d-w16d4-rr-2l-10s@1"]
    one_by_one = model.predict(members, Load(1000, phases=5, spread_s=1.0))
    bunched = model.predict(members, Load(1000, phases=5, spread_s=1.0, bunch_s=0.1))
    assert bunched.batches_per_tick == pytest.approx(20.0)  # 200 windows per tick in 10 bunches, 2 batches each
    assert one_by_one.batches_per_tick > 5 * bunched.batches_per_tick
    assert bunched.p50_ms > one_by_one.p50_ms  # a bunch waits for its own batch
    assert bunched.utilisation == pytest.approx(one_by_one.utilisation)
    with pytest.raises(EnsembleError):
        Load(10, bunch_s=-0.1)


def test_a_profile_scaled_by_what_was_measured_here(zoo: list[ServedModel], model: LatencyModel) -> None:
    profile = BatchProfile({1: 2.0, 4: 3.0, 64: 20.0, 256: 80.0})
    scaled = profile.scaled(1.5, 3.0)
    assert scaled(1) == pytest.approx(3.0) and scaled(64) == pytest.approx(60.0) and scaled(256) == pytest.approx(240)
    assert scaled(4) == pytest.approx(3.0 * 1.5 * 2 ** (2 / 6))  # the factor in log batch size, a third of the way
    with pytest.raises(EnsembleError):
        profile.scaled(0.0, 1.0)
    # a latency model rescaled for one member: that member's batches cost more, the others' the same
    members = ["resnet1d-w16d4-rr-2l-10s@1", "transformer-d48l3-rr-1l-10s@1"]
    slower = model.rescaled({members[0]: (2.0, 2.5)})
    assert slower.profile_scales == {members[0]: (2.0, 2.5)} and model.profile_scales == {}
    assert slower.models_ms(members[:1], 64) == pytest.approx(2.5 * model.models_ms(members[:1], 64))
    assert slower.models_ms(members[1:], 64) == pytest.approx(model.models_ms(members[1:], 64))
    load = Load(256, phases=5)
    assert slower.predict(members, load).p99_ms > model.predict(members, load).p99_ms
    assert slower.with_costs(feature_ms=2.0).profile_scales == slower.profile_scales
