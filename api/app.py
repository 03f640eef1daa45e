"""Application factory: ``create_app(config)`` wires the database, auth, hub, consumers, metrics and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.alerts import AlertRules, AlertStore
from api.audit import AuditLog, AuditMiddleware
from api.config import ApiConfig
from api.consumer import ScoreConsumer
from api.db import ScoreStore, make_engine
from api.deadletters import DeadLetterMonitor
from api.deps import Services
from api.hub import Hub
from api.metrics import HttpMetricsMiddleware, Metrics
from api.migrate import upgrade_api
from api.plans import PlanMonitor, PlanStore
from api.routes import api_router
from api.routes import models as models_routes
from api.users import UserStore

if TYPE_CHECKING:
    from models.registry.registration import RegistrationConfig

log = logging.getLogger(__name__)

#: Swagger UI's files, from the ``fastapi-offline`` wheel: the docs page works without internet.
DOCS_STATIC_DIR = files("fastapi_offline") / "static"
# The page's own files only; Swagger UI (under /docs) needs its inline bootstrap script.
_CSP = ("default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class SecurityHeadersMiddleware:
    """Headers every response gets (CSP only outside the Swagger UI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"].startswith(("/docs", "/docs-static"))

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                            (b"x-frame-options", b"DENY")]
                if not docs:
                    headers.append((b"content-security-policy", _CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)


async def _retention_loop(config: ApiConfig, store: ScoreStore, users: UserStore) -> None:
    """Purge score history past ``score_retention_s`` and expired sessions, every ``retention_interval_s``."""
    while True:
        try:
            if config.score_retention_s > 0:
                purged = await run_in_threadpool(store.purge, time.time() - config.score_retention_s)
                if purged:
                    log.info("retention: deleted %d scores older than %.0f s", purged, config.score_retention_s)
            await run_in_threadpool(users.purge_sessions)
        except Exception:  # noqa: BLE001 - retention retries next round; the stream path must not stop
            log.exception("retention pass failed")
        await asyncio.sleep(config.retention_interval_s)


def _admin_token(config: ApiConfig) -> str:
    if config.admin_token is not None:
        return config.admin_token.get_secret_value()
    # ApiConfig refuses production without a token, so this is dev mode only.
    token = secrets.token_urlsafe(32)
    log.warning("dev mode: HOLMES_ADMIN_TOKEN is not set; the admin token of this run is %s", token)
    return token


def create_app(config: ApiConfig, registration: RegistrationConfig | None = None) -> FastAPI:
    """A FastAPI app; connections are opened by its lifespan, not here (``registration`` enables model uploads)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(config.database_url)
        retention: asyncio.Task[None] | None = None
        try:
            await run_in_threadpool(upgrade_api, engine)
            app.state.model_registry = await run_in_threadpool(models_routes.open_model_registry, engine, registration)
            users = UserStore(engine, config.session_ttl_s)
            await run_in_threadpool(users.bootstrap_admin, _admin_token(config))
            rules = AlertRules(config.alert_threshold, config.alert_clear_threshold, config.alert_raise_windows,
                               config.alert_clear_windows)
            store = ScoreStore(engine, rules, config.hop_s)
            hub = Hub(config.ws_queue_size)
            metrics = Metrics()
            consumer = ScoreConsumer(config, store, hub, metrics=metrics)
            deadletters = DeadLetterMonitor(config.kafka_bootstrap, config.deadletter_topic, metrics,
                                            keep=config.recent_dead_letters,
                                            backoff_max_s=config.connect_backoff_max_s)
            plan_store = PlanStore(engine)
            plans = PlanMonitor(config.kafka_bootstrap, config.plans_topic, plan_store, metrics,
                                keep=config.recent_plans, backoff_max_s=config.connect_backoff_max_s)
            await run_in_threadpool(plans.load)
            metrics.live.sources.append(lambda: _live_samples(consumer, hub, deadletters, plans))
            app.state.services = Services(config=config, engine=engine, store=store, hub=hub, consumer=consumer,
                                          alerts=AlertStore(engine), users=users, audit=AuditLog(engine),
                                          metrics=metrics, deadletters=deadletters, plans=plans,
                                          plan_store=plan_store)
            if config.kafka_bootstrap is not None:
                await consumer.start()
                await deadletters.start()
                await plans.start()
            retention = asyncio.create_task(_retention_loop(config, store, users), name="holmes-api-retention")
            try:
                yield
            finally:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
                await plans.stop()
                await deadletters.stop()
                await consumer.stop()
                hub.close()
        finally:
            engine.dispose()

    app = FastAPI(
        title="holmes",
        summary="Live AF risk per bed: dashboard, alerts, model registry and operations",
        description="Send `Authorization: Bearer <token>` (an API token, or a session token from "
                    "`POST /api/auth/login`). Roles: viewer (reads), clinician (acknowledges alerts), "
                    "data_scientist (registers models), admin (everything, incl. promote/retire and users).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(api_router)
    app.include_router(models_routes.router)
    app.mount("/static", StaticFiles(directory=config.static_dir), name="static")
    app.mount("/docs-static", StaticFiles(directory=str(DOCS_STATIC_DIR)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        """Swagger UI served from this process (no CDN)."""
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title="holmes API",
                                   swagger_js_url=f"{root}/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}/docs-static/swagger-ui.css",
                                   swagger_favicon_url=f"{root}/docs-static/favicon.png")

    app.add_middleware(AuditMiddleware)
    app.add_middleware(HttpMetricsMiddleware, metrics=_metrics_of)
    if config.cors_origins:
        # Off by default: the page is served by this app (same origin). Bearer tokens, never cookies, so no
        # credentials mode; inside the security headers so that preflight answers get them too.
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST", "PATCH"], allow_headers=["Authorization", "Content-Type"],
                           max_age=600)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


def _metrics_of(scope: Scope) -> Metrics | None:
    services = getattr(getattr(scope.get("app"), "state", None), "services", None)
    return getattr(services, "metrics", None)


def _live_samples(
    consumer: ScoreConsumer, hub: Hub, deadletters: DeadLetterMonitor, plans: PlanMonitor
) -> list[tuple[str, str, str, float]]:
    stats = consumer.stats
    plan_stats = plans.stats
    return [
        ("holmes_scores_received", "Score messages read from Kafka", "counter", stats.received),
        ("holmes_scores_undecodable", "Score messages that could not be decoded", "counter", stats.undecodable),
        ("holmes_scores_rejected", "Scores that failed the api's checks", "counter", stats.rejected),
        ("holmes_scores_duplicates", "Scores already stored (replays)", "counter", stats.duplicates),
        ("holmes_score_write_errors", "Failed database writes (retried)", "counter", stats.write_errors),
        ("holmes_ws_clients", "Open WebSocket clients", "gauge", hub.clients),
        ("holmes_ws_dropped", "Messages dropped for slow WebSocket clients", "counter", hub.dropped),
        ("holmes_dead_letter_monitor_up", "1 while the dead-letter topic is being read", "gauge",
         1.0 if deadletters.state == "running" else 0.0),
        ("holmes_plans_received", "Plan records read from the plans topic (replays at start-up included)", "counter",
         plan_stats.received),
        ("holmes_plans_undecodable", "Plan records that could not be decoded", "counter", plan_stats.undecodable),
        ("holmes_plans_rejected", "Plan records the api could not store", "counter", plan_stats.rejected),
        ("holmes_plan_monitor_up", "1 while the plans topic is being read", "gauge",
         1.0 if plans.state == "running" else 0.0),
    ]
