"""Application factory: ``create_app(config)`` wires the database, hub, consumer and routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from api.config import ApiConfig
from api.consumer import ScoreConsumer
from api.db import ScoreStore, make_engine
from api.deps import Services
from api.hub import Hub
from api.routes import api_router
from api.tables import init_db


def create_app(config: ApiConfig) -> FastAPI:
    """A FastAPI app; connections are opened by its lifespan, not here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(config.database_url)
        try:
            await run_in_threadpool(init_db, engine)
            store = ScoreStore(engine)
            hub = Hub(config.ws_queue_size)
            consumer = ScoreConsumer(config, store, hub)
            app.state.services = Services(config=config, engine=engine, store=store, hub=hub, consumer=consumer)
            if config.kafka_bootstrap is not None:
                await consumer.start()
            try:
                yield
            finally:
                await consumer.stop()
                hub.close()
        finally:
            engine.dispose()

    app = FastAPI(title="holmes", summary="Live AF risk per bed", lifespan=lifespan)
    app.include_router(api_router)
    app.mount("/static", StaticFiles(directory=config.static_dir), name="static")
    return app
