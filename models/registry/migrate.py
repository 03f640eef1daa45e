"""Run the registry's Alembic migrations programmatically (no ``alembic.ini`` needed)."""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "alembic_config",
    "head_revision",
    "registry_revision",
    "upgrade_registry",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_registry"
# Any constant works; it only has to differ from other advisory locks taken on the same database.
_PG_LOCK_KEY = 0x686F6C6D6573  # "holmes"
_SQLITE_ATTEMPTS = 3


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` pointing at the registry migrations (``url`` only for the command line)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision of the registry migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def registry_revision(engine: Engine) -> str | None:
    """The revision the database is at, ``None`` before the first upgrade."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade_registry(engine: Engine, revision: str = "head") -> None:
    """Bring the registry tables to ``revision``; safe to call from several processes at once."""
    config = alembic_config()
    attempts = _SQLITE_ATTEMPTS if engine.dialect.name == "sqlite" else 1
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Serialises concurrent upgrades (the api and `holmes models import-zoo` start together).
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                config.attributes["connection"] = conn
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
