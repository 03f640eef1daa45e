"""api: the FastAPI dashboard, REST routes, live WebSocket feed and persistence of scores."""

from api.app import create_app
from api.config import ApiConfig

__all__ = ["ApiConfig", "create_app"]
