"""How a worker builds its planner and first plan, shared by ``holmes worker`` and ``holmes evaluate``.

``holmes evaluate --beds N`` must score with exactly the ensemble a worker started with
``HOLMES_PLAN_BEDS=N`` would serve, so both commands build the planner here, from the same settings.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from holmes.settings import WorkerSettings

if TYPE_CHECKING:
    from ensemble.latency import Load
    from ensemble.planner import Planner
    from ensemble.scoring import FeatureExtractor, ServingPlan
    from models.zoo import ServedModel

__all__ = ["build_planner", "describe_plan", "first_load", "measure_profile_scales", "resolve_device"]

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """The torch device for ``HOLMES_DEVICE``: ``cpu``, ``cuda`` (refused without a GPU) or ``auto`` (cuda if any).

    Raises ``ValueError`` when ``cuda`` is asked for and torch sees none (a CPU-only torch build, no driver, or
    a container started without the GPU), so a worker never falls back to CPU silently.
    """
    import torch

    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"HOLMES_DEVICE must be cpu, cuda or auto, not {device!r}")
    if device == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if device == "auto":
        return "cpu"
    raise ValueError(
        f"HOLMES_DEVICE=cuda but torch {torch.__version__} sees no GPU (torch.version.cuda={torch.version.cuda}): "
        "install a CUDA build of torch and start the container with the GPU (README, Production deployment)"
    )


def measure_profile_scales(models: Sequence[ServedModel], budget_s: float = 0.1) -> dict[str, tuple[float, float]]:
    """Per model, its time here and now over its card's profile at batch 1 and at ``PROFILE_SCALE_BATCH``
    (:func:`models.zoo.served.profile_latency`: median of timed calls, one torch thread, on the model's device).

    A card's profile was measured when the model was registered; on another day the same machine ran the
    10-s candidates 1.1-3.3x slower, idle (1.5-2.9x at batch 1, 1.1-3.3x at 64: not one factor per
    machine), and the latency model would have taken that for contention only once batches had run.
    About 3 s at worker start (18 candidates; 6 s on the slower day)."""
    from ensemble.latency import PROFILE_SCALE_BATCH, BatchProfile
    from models.zoo.served import profile_latency

    out: dict[str, tuple[float, float]] = {}
    for model in models:
        card = BatchProfile.from_card(model.card.latency_ms)
        large = PROFILE_SCALE_BATCH
        now = profile_latency(model, (1, large), device=model.device, budget_s=budget_s)
        if card(1) > 0 and card(large) > 0:
            out[model.model_id] = (now[1] / card(1), now[large] / card(large))
    return out


def build_planner(zoo: Sequence[ServedModel], settings: WorkerSettings, feature_ms: float | None = None,
                  feature_fixed_ms: float = 0.0, search_in_process: bool = False,
                  extract: FeatureExtractor | None = None,
                  profile_scales: Mapping[str, tuple[float, float]] | None = None) -> Planner:
    """The worker's planner: latency model from the zoo's profiles, budget, window, hop and size from settings.

    The feature costs (``feature_fixed_ms`` per batch + ``feature_ms`` per window) are timed here, as at worker
    start (through ``extract``, the scorer's feature extraction), unless ``feature_ms`` is given; so are the
    candidates' profiles against their cards (:func:`measure_profile_scales`), unless ``profile_scales`` is
    given (``{}``: the cards as they are). The latency model is the planner's ``latency``; its downstream
    transport waits up to half of ``api_fetch_max_wait_ms``.
    """
    from ensemble.latency import PROFILE_SCALE_BATCH, Costs, LatencyModel, Transport, measure_feature_costs
    from ensemble.planner import Planner, PlannerConfig
    from ensemble.selector import candidates

    batch = 1 if settings.exec_mode == "per-request" else settings.max_batch
    if feature_ms is None:
        feature_fixed_ms, feature_ms = measure_feature_costs(extract=extract)
    costs = Costs(feature_ms=feature_ms, feature_fixed_ms=feature_fixed_ms, max_batch=batch)
    config = PlannerConfig(
        budget_ms=settings.budget_ms, window_s=settings.window_s, hop_s=settings.hop_s,
        max_members=settings.max_members, contention=settings.cpu_contention,
        max_utilisation=settings.max_utilisation,
        pinned=tuple(m.strip() for m in settings.ensemble.split(",") if m.strip()),
        search_in_process=search_in_process,
    )
    latency = LatencyModel.from_models(zoo, costs)
    if profile_scales is None:
        profile_scales = measure_profile_scales(candidates(zoo, config.window_s, config.leads))
        if profile_scales:
            large = sorted(b for _, b in profile_scales.values())
            log.info("the %d candidate models run %.2f-%.2fx their cards' profiles here at batch %d (median "
                     "%.2fx); planning with what was measured", len(large), large[0], large[-1],
                     PROFILE_SCALE_BATCH, large[len(large) // 2])
    latency = latency.rescaled(profile_scales)
    # Upstream: the default until the worker has measured its own. Downstream: a score waits for the API's
    # fetch in flight, which the embedded broker holds about half of its wait even when data arrives meanwhile
    # (../shared/BROKER.md, long-poll), so uniform over 0..wait/2.
    latency.transport = Transport(downstream_wait_ms=settings.api_fetch_max_wait_ms / 2)
    return Planner(zoo, latency, config)


def first_load(settings: WorkerSettings) -> Load:
    """The load the first plan is made for: ``plan_beds`` beds due in ``plan_phases`` ticks per hop."""
    from ensemble.latency import Load

    return Load(settings.plan_beds, settings.hop_s, phases=settings.plan_phases)


def describe_plan(planner: Planner, plan: ServingPlan, load: Load, mode: str = "ensemble") -> dict[str, Any]:
    """JSON-ready account of a plan at ``load``: members, validation objective, predicted latency, budget, load.

    A plan the planner did not make (one given model) gets its objective and latency from the planner too.
    """
    table = planner.table
    members = plan.member_ids
    known = set(planner.candidate_ids)

    def objective(ids: tuple[str, ...]) -> float | None:
        return _finite(table.objective(ids), 4) if table is not None and set(ids) <= known else None

    planned = planner.current is plan
    prediction = planner.predict(members, load)
    return {
        "mode": mode,
        "members": list(members),
        "objective": _finite(plan.objective, 4) if planned else objective(members),
        "objective_is": "validation ROC-AUC of the combined window score, mean over the data sets",
        "member_objectives": {m: objective((m,)) for m in members},
        "method": planner.choose(load).method if planned else "given",
        "predicted_p50_ms": _finite(prediction.p50_ms, 1),
        "predicted_p99_ms": _finite(prediction.p99_ms, 1),
        "budget_ms": planner.config.budget_ms,
        "beds": load.beds,
        "phases": load.phases,
        "aligned": load.phases == 1,
        "hop_s": load.hop_s,
        "window_s": planner.config.window_s,
        "max_members": planner.config.max_members,
        "feature_ms": round(planner.latency.costs.feature_ms, 4),
        "feature_fixed_ms": round(planner.latency.costs.feature_fixed_ms, 4),
        "max_batch": planner.latency.costs.max_batch,
        "profile_scales": {m: [round(a, 4), round(b, 4)] for m, (a, b) in planner.latency.profile_scales.items()},
        "temperature": round(plan.combiner.temperature, 4),
        "fallback": [f"{m.name}@{m.version}" for m in plan.fallback],
        "reason": plan.reason,
    }


def _finite(value: float, digits: int) -> float | None:
    return round(float(value), digits) if math.isfinite(value) else None
