"""Root exception of the api package."""


class ApiError(Exception):
    """Base class for everything api raises on purpose."""


class ConfigError(ApiError, ValueError):
    """An ``ApiConfig`` value is out of range."""
