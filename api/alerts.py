"""AF alerts: persistence with hysteresis, evaluated as scores are stored; listing and acknowledgement.

A bed's alert is **raised** after ``raise_windows`` consecutive ``ok`` windows with ``risk >= threshold`` and
**cleared** after ``clear_windows`` consecutive ``ok`` windows with ``risk < clear_threshold``. A window between
the two thresholds breaks either streak; an ``unscorable`` window changes nothing (it says nothing about the
rhythm). Only windows stored for the first time are evaluated, in window order, and the streaks live in the
``beds`` row written in the same transaction, so replayed scores and restarts never raise an alert twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.audit import audit_entry
from api.errors import ApiError
from api.tables import Alert, AlertEvent
from ingest.schemas import ScoreRecord

AlertState = Literal["active", "cleared"]
EventKind = Literal["raised", "acknowledged", "cleared"]
#: The most rows one call of ``AlertStore.list`` returns.
MAX_ALERTS_LIMIT = 500


class AlertNotFound(ApiError):
    """No alert with this id."""


class AlreadyAcknowledged(ApiError):
    """The alert was acknowledged before (by someone, at some time: see the message)."""


@dataclass(frozen=True, slots=True)
class AlertRules:
    """Thresholds and persistence of the alert hysteresis."""

    threshold: float = 0.7
    clear_threshold: float = 0.5
    raise_windows: int = 3
    clear_windows: int = 3


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert after something happened to it, and that event (for the WebSocket and the metrics)."""

    alert: Alert
    event: AlertEvent


class BedStreaks(Protocol):
    """What alert evaluation reads and advances of a bed: a ``Bed`` row, or the store's plain copy of one."""

    bed_id: str
    alert_above: int
    alert_below: int
    open_alert_id: int | None


def step(rules: AlertRules, bed: BedStreaks, record: ScoreRecord) -> Literal["raise", "clear"] | None:
    """Advance the bed's streaks by one newer window; says whether to raise or clear its alert."""
    if record.state != "ok" or record.risk is None:
        return None
    if record.risk >= rules.threshold:
        bed.alert_above, bed.alert_below = bed.alert_above + 1, 0
    elif record.risk < rules.clear_threshold:
        bed.alert_above, bed.alert_below = 0, bed.alert_below + 1
    else:
        bed.alert_above = bed.alert_below = 0
    if bed.open_alert_id is None and bed.alert_above >= rules.raise_windows:
        return "raise"
    if bed.open_alert_id is not None and bed.alert_below >= rules.clear_windows:
        return "clear"
    return None


def apply_window(session: Session, rules: AlertRules, bed: BedStreaks, record: ScoreRecord,
                 now_s: float) -> AlertChange | None:
    """Evaluate one new window of ``bed`` inside the caller's transaction; returns what happened, if anything."""
    action = step(rules, bed, record)
    alert = session.get(Alert, bed.open_alert_id) if bed.open_alert_id is not None else None
    if alert is not None and record.state == "ok" and record.risk is not None:
        alert.last_risk = record.risk
        alert.peak_risk = max(alert.peak_risk, record.risk)
    if action == "raise":
        assert record.risk is not None
        alert = Alert(bed_id=bed.bed_id, state="active", threshold=rules.threshold, raised_at_s=now_s,
                      raised_window_end_s=record.window_end_s, peak_risk=record.risk, last_risk=record.risk)
        session.add(alert)
        session.flush()
        bed.open_alert_id = alert.id
        event = AlertEvent(alert_id=alert.id, bed_id=bed.bed_id, kind="raised", at_s=now_s,
                           window_end_s=record.window_end_s, risk=record.risk)
    elif action == "clear" and alert is not None:
        alert.state, alert.cleared_at_s, alert.cleared_window_end_s = "cleared", now_s, record.window_end_s
        bed.open_alert_id = None
        event = AlertEvent(alert_id=alert.id, bed_id=bed.bed_id, kind="cleared", at_s=now_s,
                           window_end_s=record.window_end_s, risk=record.risk)
    else:
        return None
    session.add(event)
    session.flush()
    return AlertChange(alert, event)


class AlertStore:
    """Reads alerts and their events, and acknowledges them (blocking; call from a thread in async code)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def list(self, *, state: AlertState | None = None, acknowledged: bool | None = None, bed_id: str | None = None,
             since_s: float | None = None, until_s: float | None = None, limit: int = 100,
             before_id: int | None = None) -> Sequence[Alert]:
        """Newest first (by id); ``before_id`` pages back; times filter ``raised_at_s``."""
        if not 1 <= limit <= MAX_ALERTS_LIMIT:
            raise ValueError(f"limit must be in [1, {MAX_ALERTS_LIMIT}], not {limit}")
        query = select(Alert)
        if state is not None:
            query = query.where(Alert.state == state)
        if acknowledged is not None:
            query = query.where(Alert.acknowledged_at_s.is_not(None) if acknowledged
                                else Alert.acknowledged_at_s.is_(None))
        if bed_id is not None:
            query = query.where(Alert.bed_id == bed_id)
        if since_s is not None:
            query = query.where(Alert.raised_at_s >= since_s)
        if until_s is not None:
            query = query.where(Alert.raised_at_s <= until_s)
        if before_id is not None:
            query = query.where(Alert.id < before_id)
        with Session(self.engine) as session:
            return list(session.scalars(query.order_by(Alert.id.desc()).limit(limit)))

    def open_by_bed(self) -> dict[str, Alert]:
        """Each bed's alert that still needs attention: active, or cleared but never acknowledged (newest)."""
        query = select(Alert).where((Alert.state == "active") | Alert.acknowledged_at_s.is_(None))
        with Session(self.engine) as session:
            out: dict[str, Alert] = {}
            for alert in session.scalars(query.order_by(Alert.id)):
                out[alert.bed_id] = alert
            return out

    def get(self, alert_id: int) -> tuple[Alert, list[AlertEvent]]:
        """One alert with its events in order; raises ``AlertNotFound``."""
        with Session(self.engine) as session:
            alert = session.get(Alert, alert_id)
            if alert is None:
                raise AlertNotFound(f"no alert {alert_id}")
            events = list(session.scalars(select(AlertEvent).where(AlertEvent.alert_id == alert_id)
                                          .order_by(AlertEvent.id)))
            return alert, events

    def events(self, bed_id: str, since_s: float | None = None, until_s: float | None = None,
               limit: int = 500) -> Sequence[AlertEvent]:
        """A bed's alert events, oldest first, ``at_s`` within the range."""
        query = select(AlertEvent).where(AlertEvent.bed_id == bed_id)
        if since_s is not None:
            query = query.where(AlertEvent.at_s >= since_s)
        if until_s is not None:
            query = query.where(AlertEvent.at_s <= until_s)
        with Session(self.engine) as session:
            rows = list(session.scalars(query.order_by(AlertEvent.id.desc()).limit(limit)))
        return rows[::-1]

    def acknowledge(self, alert_id: int, username: str, role: str, note: str | None = None,
                    remote: str | None = None) -> AlertChange:
        """Acknowledge once, with its event and audit entry in one transaction; raises if unknown or done."""
        now = time.time()
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            alert = session.get(Alert, alert_id, with_for_update=True)
            if alert is None:
                raise AlertNotFound(f"no alert {alert_id}")
            if alert.acknowledged_at_s is not None:
                raise AlreadyAcknowledged(
                    f"alert {alert_id} was acknowledged by {alert.acknowledged_by} at "
                    f"{time.strftime('%H:%M:%S', time.localtime(alert.acknowledged_at_s))}"
                )
            alert.acknowledged_at_s, alert.acknowledged_by, alert.ack_note = now, username, note
            event = AlertEvent(alert_id=alert.id, bed_id=alert.bed_id, kind="acknowledged", at_s=now,
                               actor=username, note=note, risk=alert.last_risk)
            session.add(event)
            session.add(audit_entry(username, "alert.acknowledge", role=role, target=f"alert:{alert.id}",
                                    remote=remote, detail={"bed_id": alert.bed_id, "note": note,
                                                           "alert_state": alert.state}))
            session.flush()
            return AlertChange(alert, event)
