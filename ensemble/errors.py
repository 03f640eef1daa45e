"""Root exception of the ensemble package."""


class EnsembleError(Exception):
    """Base class for everything ensemble raises on purpose."""
