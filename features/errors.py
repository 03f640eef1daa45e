"""Root exception of the ``features`` package."""

from __future__ import annotations

__all__ = ["FeatureError"]


class FeatureError(ValueError):
    """Raised when a window cannot be processed: bad shape, bad sample rate or non-finite samples."""
