"""Alert hysteresis: raised after N windows over the threshold, cleared after M under it, idempotent on replays."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from api.alerts import AlertRules, AlertStore, AlreadyAcknowledged, step
from api.db import ScoreStore, make_engine
from api.migrate import upgrade_api
from api.tables import Bed
from ingest.schemas import ScoreRecord

RULES = AlertRules(threshold=0.7, clear_threshold=0.5, raise_windows=3, clear_windows=2)
ScoreFactory = Callable[..., ScoreRecord]


def walk(risks: list[float | None], rules: AlertRules = RULES) -> list[str]:
    """Feed ``step`` a sequence of risks (``None`` = unscorable) and record the open/closed state after each."""
    bed = Bed(bed_id="b", alert_above=0, alert_below=0, open_alert_id=None)
    states = []
    for risk in risks:
        record = ScoreRecord("b", 0.0, 10.0, "ok" if risk is not None else "unscorable", risk=risk)
        action = step(rules, bed, record)
        if action == "raise":
            bed.open_alert_id = 1
        elif action == "clear":
            bed.open_alert_id = None
        states.append("A" if bed.open_alert_id else ".")
    return states


@pytest.mark.parametrize(
    ("risks", "expected"),
    [
        ([0.9, 0.9, 0.9], ". . A"),
        ([0.9, 0.9, 0.6, 0.9, 0.9], ". . . . ."),  # between the thresholds breaks the streak
        ([0.9, 0.9, None, 0.9], ". . . A"),  # an unscorable window says nothing: the streak goes on
        ([0.9, 0.9, 0.9, 0.4, 0.8, 0.4, 0.4], ". . A A A A ."),  # one low window does not clear (hysteresis)
        ([0.9, 0.9, 0.9, 0.6, 0.6, 0.6], ". . A A A A"),  # between the thresholds never clears
        ([0.9, 0.9, 0.9, 0.4, 0.4, 0.9, 0.9, 0.9], ". . A A . . . A"),
    ],
)
def test_step_raises_and_clears_with_hysteresis(risks: list[float | None], expected: str) -> None:
    assert " ".join(walk(risks)) == expected


@pytest.fixture
def store(database_url: str) -> Iterator[ScoreStore]:
    engine = make_engine(database_url)
    upgrade_api(engine)
    yield ScoreStore(engine, RULES, hop_s=5.0)
    engine.dispose()


def series(make_score: ScoreFactory, risks: list[float | None], bed: str = "bed-1", t0: float = 1000.0,
           models: tuple[str, ...] = ("rr-af@1",)) -> list[ScoreRecord]:
    return [make_score(bed, t0 + 5 * i, risk=r, state="ok" if r is not None else "unscorable",
                       reason=None if r is not None else "noise", models=models if r is not None else ())
            for i, r in enumerate(risks)]


def test_alert_is_raised_cleared_and_stored_with_its_events(store: ScoreStore, make_score: ScoreFactory) -> None:
    outcome = store.write(series(make_score, [0.2, 0.8, 0.9, 0.95, 0.3, 0.2, 0.1]), received_at_s=2000.0)
    assert [(c.event.kind, c.event.window_end_s, c.event.risk) for c in outcome.alerts] == [
        ("raised", 1015.0, 0.95), ("cleared", 1025.0, 0.2)]
    alerts = AlertStore(store.engine)
    (alert,) = alerts.list()
    assert (alert.state, alert.peak_risk, alert.last_risk, alert.raised_window_end_s) == ("cleared", 0.95, 0.2, 1015.0)
    assert alert.acknowledged_at_s is None
    assert [e.kind for e in alerts.get(alert.id)[1]] == ["raised", "cleared"]
    # Cleared but never acknowledged: it still needs attention.
    assert alerts.open_by_bed()["bed-1"].id == alert.id


def test_replayed_and_late_scores_never_raise_twice(store: ScoreStore, make_score: ScoreFactory) -> None:
    records = series(make_score, [0.9, 0.9, 0.9, 0.9])
    assert len(store.write(records, 1.0).alerts) == 1
    assert store.write(records, 2.0).alerts == []  # the whole batch again (a Kafka replay)
    # A late, older window that is new to the database moves nothing.
    assert store.write([make_score("bed-1", 990.0, risk=0.1)], 3.0).alerts == []
    assert len(AlertStore(store.engine).list()) == 1


def test_streaks_survive_a_restart(store: ScoreStore, make_score: ScoreFactory) -> None:
    store.write(series(make_score, [0.9, 0.9]), 1.0)
    restarted = ScoreStore(store.engine, RULES)  # a new process on the same database
    outcome = restarted.write([make_score("bed-1", 1010.0, risk=0.9)], 2.0)
    assert [c.event.kind for c in outcome.alerts] == ["raised"]


def test_acknowledge_once_with_who_and_note(store: ScoreStore, make_score: ScoreFactory) -> None:
    store.write(series(make_score, [0.9, 0.9, 0.9]), 1.0)
    alerts = AlertStore(store.engine)
    (alert,) = alerts.list()
    change = alerts.acknowledge(alert.id, "ana", "clinician", "seen, rate control", "10.0.0.7")
    assert (change.event.kind, change.event.actor, change.event.note) == ("acknowledged", "ana", "seen, rate control")
    with pytest.raises(AlreadyAcknowledged, match="by ana"):
        alerts.acknowledge(alert.id, "bo", "clinician")
    assert alerts.list(acknowledged=True)[0].acknowledged_by == "ana"
    assert alerts.list(acknowledged=False) == []
    assert alerts.list(state="active")[0].id == alert.id
    assert [e.kind for e in alerts.events("bed-1")] == ["raised", "acknowledged"]


def test_lost_windows_provenance_changes_and_the_latest_strip(store: ScoreStore, make_score: ScoreFactory) -> None:
    first = make_score("bed-1", 1000.0, models=("rr-af@1",), strip_hz=50.0, strip_mv=(0.1, 0.2))
    # Two windows (1005, 1010) never arrived; then the ensemble switched models.
    later = make_score("bed-1", 1015.0, models=("cnn@2", "rr-af@1"), strip_hz=50.0, strip_mv=(0.3,))
    outcome = store.write([first, later], 1.0)
    assert (outcome.windows_lost, outcome.provenance_changes) == (2, 1)
    bed = store.get_bed("bed-1")
    assert bed is not None
    assert (bed.windows_lost, bed.last_models, bed.strip_mv, bed.strip_hz) == (2, ["cnn@2", "rr-af@1"], [0.3], 50.0)
    # A partial score (a member skipped for the deadline) is no change of selection, nor is the next full one.
    partial = make_score("bed-1", 1020.0, models=("rr-af@1",), extra={"partial": 1, "skipped_models": "cnn@2"})
    full = make_score("bed-1", 1025.0, models=("cnn@2", "rr-af@1"))
    assert store.write([partial, full], 1.5).provenance_changes == 0
    # A stream that restarts hours later is not counted as lost windows.
    assert store.write([make_score("bed-1", 1015.0 + 3600 * 5)], 2.0).windows_lost == 0
    # A gap window has no strip: the bed's strip is cleared rather than showing an older one as current.
    store.write([make_score("bed-1", 1015.0 + 3600 * 5 + 5, state="unscorable", risk=None, reason="gap")], 3.0)
    bed = store.get_bed("bed-1")
    assert bed is not None and bed.strip_mv is None


def test_purge_deletes_old_history_only(store: ScoreStore, make_score: ScoreFactory) -> None:
    store.write(series(make_score, [0.1] * 6), 1.0)
    assert store.purge(1010.0) == 2
    assert [s.window_end_s for s in store.scores_for_bed("bed-1")] == [1025.0, 1020.0, 1015.0, 1010.0]
