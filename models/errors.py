"""Root exception of the ``models`` package."""

from __future__ import annotations

__all__ = ["ModelError"]


class ModelError(Exception):
    """Raised for missing or inconsistent data, artifacts or model inputs."""
