"""FastAPI dependencies: the services built by the lifespan, as ``Annotated`` aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends
from sqlalchemy import Engine
from starlette.requests import HTTPConnection

from api.alerts import AlertStore
from api.audit import AuditLog
from api.config import ApiConfig
from api.consumer import ScoreConsumer
from api.db import ScoreStore
from api.hub import Hub
from api.metrics import Metrics
from api.plans import PlanMonitor, PlanStore

if TYPE_CHECKING:
    from api.deadletters import DeadLetterMonitor
    from api.users import UserStore


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a route may need, created once per app by the lifespan."""

    config: ApiConfig
    engine: Engine
    store: ScoreStore
    hub: Hub
    consumer: ScoreConsumer
    alerts: AlertStore
    users: UserStore
    audit: AuditLog
    metrics: Metrics
    deadletters: DeadLetterMonitor
    plans: PlanMonitor
    plan_store: PlanStore


def get_services(conn: HTTPConnection) -> Services:
    """The app's services (works for HTTP requests and WebSockets alike)."""
    services: Services = conn.app.state.services
    return services


def get_config(conn: HTTPConnection) -> ApiConfig:
    """The app's configuration."""
    return get_services(conn).config


def get_store(conn: HTTPConnection) -> ScoreStore:
    """The score store."""
    return get_services(conn).store


def get_hub(conn: HTTPConnection) -> Hub:
    """The WebSocket broadcast hub."""
    return get_services(conn).hub


def get_consumer(conn: HTTPConnection) -> ScoreConsumer:
    """The Kafka score consumer (present even when disabled, for its counters)."""
    return get_services(conn).consumer


def get_alerts(conn: HTTPConnection) -> AlertStore:
    """The alert store."""
    return get_services(conn).alerts


def get_audit(conn: HTTPConnection) -> AuditLog:
    """The audit log."""
    return get_services(conn).audit


def get_metrics(conn: HTTPConnection) -> Metrics:
    """The app's Prometheus metrics."""
    return get_services(conn).metrics


def get_plans(conn: HTTPConnection) -> PlanMonitor:
    """The plans reader with each worker's plan in force."""
    return get_services(conn).plans


def get_plan_store(conn: HTTPConnection) -> PlanStore:
    """The stored plan history."""
    return get_services(conn).plan_store


def remote_address(conn: HTTPConnection) -> str | None:
    """The client's address, for the audit log."""
    return conn.client.host if conn.client is not None else None


ConfigDep = Annotated[ApiConfig, Depends(get_config)]
StoreDep = Annotated[ScoreStore, Depends(get_store)]
HubDep = Annotated[Hub, Depends(get_hub)]
ConsumerDep = Annotated[ScoreConsumer, Depends(get_consumer)]
AlertsDep = Annotated[AlertStore, Depends(get_alerts)]
AuditDep = Annotated[AuditLog, Depends(get_audit)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RemoteDep = Annotated[str | None, Depends(remote_address)]
PlansDep = Annotated[PlanMonitor, Depends(get_plans)]
PlanStoreDep = Annotated[PlanStore, Depends(get_plan_store)]
