"""FastAPI dependencies: the services built by the lifespan, as ``Annotated`` aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from sqlalchemy import Engine
from starlette.requests import HTTPConnection

from api.config import ApiConfig
from api.consumer import ScoreConsumer
from api.db import ScoreStore
from api.hub import Hub


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a route may need, created once per app by the lifespan."""

    config: ApiConfig
    engine: Engine
    store: ScoreStore
    hub: Hub
    consumer: ScoreConsumer


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


ConfigDep = Annotated[ApiConfig, Depends(get_config)]
StoreDep = Annotated[ScoreStore, Depends(get_store)]
HubDep = Annotated[Hub, Depends(get_hub)]
ConsumerDep = Annotated[ScoreConsumer, Depends(get_consumer)]
