"""Exceptions of the model registry; all derive from ``RegistryError`` (itself a ``ModelError``)."""

from __future__ import annotations

from models.errors import ModelError

__all__ = ["AlreadyRegistered", "GateFailed", "ModelNotFound", "RegistryError", "TransitionRefused"]


class RegistryError(ModelError):
    """Root exception of ``models.registry``."""


class GateFailed(RegistryError):
    """A registration gate refused the artifact; ``gate`` names it, ``reason`` says why in plain words."""

    def __init__(self, gate: str, reason: str) -> None:
        super().__init__(f"{gate} gate failed: {reason}")
        self.gate = gate
        self.reason = reason


class ModelNotFound(RegistryError, LookupError):
    """No registered model has this name (and version)."""


class AlreadyRegistered(RegistryError):
    """The name and version are taken; versions are immutable once registered."""


class TransitionRefused(RegistryError):
    """The requested status change is not in the allowed-transition table."""
