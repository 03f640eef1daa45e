"""api: the FastAPI dashboard, REST routes, live WebSocket feed, alerts, auth and persistence."""

from api.app import create_app
from api.auth import Principal, require_read, require_role
from api.config import ApiConfig

__all__ = ["ApiConfig", "Principal", "create_app", "require_read", "require_role"]
