"""Model registry: versions, lifecycle and registration gates, stored with SQLAlchemy and migrated by Alembic.

``Registry`` is the entry point (register through the gates, promote, retire, load); ``RegistryStore`` is
its database side and ``upgrade_registry`` migrates the tables.
"""

from models.registry.bundle import BundleLimits
from models.registry.errors import AlreadyRegistered, GateFailed, ModelNotFound, RegistryError, TransitionRefused
from models.registry.gates import GATES, GateConfig, GateResult, Gates
from models.registry.migrate import head_revision, registry_revision, upgrade_registry
from models.registry.registration import ImportOutcome, RegistrationConfig, Registry
from models.registry.store import (
    PROMOTION,
    TRANSITIONS,
    ModelRecord,
    NewModelVersion,
    RegistryStore,
    TransitionRecord,
    parse_ref,
)
from models.registry.tables import STATUSES, ModelStatus

__all__ = [
    "GATES",
    "PROMOTION",
    "STATUSES",
    "TRANSITIONS",
    "AlreadyRegistered",
    "BundleLimits",
    "GateConfig",
    "GateFailed",
    "GateResult",
    "Gates",
    "ImportOutcome",
    "ModelNotFound",
    "ModelRecord",
    "ModelStatus",
    "NewModelVersion",
    "RegistrationConfig",
    "Registry",
    "RegistryError",
    "RegistryStore",
    "TransitionRecord",
    "TransitionRefused",
    "head_revision",
    "parse_ref",
    "registry_revision",
    "upgrade_registry",
]
