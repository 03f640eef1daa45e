"""Routers of the api, gathered in ``api_router``."""

from fastapi import APIRouter

from api.routes import beds, health, live

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(beds.router)
api_router.include_router(live.router)

__all__ = ["api_router"]
