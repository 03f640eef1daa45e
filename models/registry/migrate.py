"""Run Alembic migrations programmatically (no ``alembic.ini`` needed): the registry's, and any other tree.

Each tree keeps its own version table in the shared database, so the registry and the API's tables migrate
independently; :class:`MigrationTree` is the one runner both use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "MigrationTree",
    "alembic_config",
    "head_revision",
    "registry_revision",
    "upgrade_registry",
]

_SQLITE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class MigrationTree:
    """An Alembic script folder with its own version table and PostgreSQL advisory-lock key."""

    script_location: Path
    version_table: str
    #: Any constant that differs from the other trees' keys on the same database.
    pg_lock_key: int

    def config(self, url: str | None = None) -> Config:
        """An Alembic ``Config`` for this tree (``url`` only for the command line)."""
        config = Config()
        config.set_main_option("script_location", str(self.script_location))
        if url is not None:
            config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        return config

    def head(self) -> str:
        """The newest revision of the tree."""
        head = ScriptDirectory.from_config(self.config()).get_current_head()
        assert head is not None
        return head

    def current(self, engine: Engine) -> str | None:
        """The revision the database is at, ``None`` before the first upgrade."""
        with engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": self.version_table}).get_current_revision()

    def upgrade(self, engine: Engine, revision: str = "head",
                prepare: Callable[[Connection, Config], None] | None = None) -> None:
        """Bring the tree's tables to ``revision``; safe to call from several processes at once.

        ``prepare`` runs inside the same transaction, before the upgrade (e.g. to stamp a legacy schema).
        """
        config = self.config()
        attempts = _SQLITE_ATTEMPTS if engine.dialect.name == "sqlite" else 1
        for attempt in range(1, attempts + 1):
            try:
                with engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        # Serialises concurrent upgrades (the api and `holmes models import-zoo` start together).
                        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.pg_lock_key})
                    config.attributes["connection"] = conn
                    if prepare is not None:
                        prepare(conn, config)
                    command.upgrade(config, revision)
                return
            except DBAPIError:
                # SQLite has no advisory lock: a process that lost the race sees "table already exists";
                # the next attempt reads the winner's version table and has nothing left to do.
                if attempt == attempts:
                    raise
                time.sleep(0.2 * attempt)
            finally:
                config.attributes.pop("connection", None)


MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_registry"
REGISTRY_TREE = MigrationTree(MIGRATIONS_DIR, VERSION_TABLE, pg_lock_key=0x686F6C6D6573)  # "holmes"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` pointing at the registry migrations (``url`` only for the command line)."""
    return REGISTRY_TREE.config(url)


def head_revision() -> str:
    """The newest revision of the registry migrations."""
    return REGISTRY_TREE.head()


def registry_revision(engine: Engine) -> str | None:
    """The revision the database is at, ``None`` before the first upgrade."""
    return REGISTRY_TREE.current(engine)


def upgrade_registry(engine: Engine, revision: str = "head") -> None:
    """Bring the registry tables to ``revision``; safe to call from several processes at once."""
    REGISTRY_TREE.upgrade(engine, revision)
