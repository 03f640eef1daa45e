"""Routers of the api, gathered in ``api_router`` (the model registry's router is included by ``create_app``)."""

from fastapi import APIRouter

from api.routes import alerts, audit, auth, beds, ensemble, health, live, scores, users

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(beds.router)
api_router.include_router(beds.trends_router)
api_router.include_router(scores.router)
api_router.include_router(alerts.router)
api_router.include_router(auth.router)
api_router.include_router(users.router)
api_router.include_router(audit.router)
api_router.include_router(ensemble.router)
api_router.include_router(live.router)

__all__ = ["api_router"]
