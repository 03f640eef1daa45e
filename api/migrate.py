"""Run the api's Alembic migrations programmatically at start-up (no ``alembic.ini`` needed)."""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

__all__ = ["BASELINE_REVISION", "MIGRATIONS_DIR", "VERSION_TABLE", "api_revision", "head_revision", "upgrade_api"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_api"
#: The schema ``create_all`` made before migrations existed; such databases are stamped here, then upgraded.
BASELINE_REVISION = "0001_api_initial"
# Differs from the registry's advisory lock key, so the two trees never wait on each other.
_PG_LOCK_KEY = 0x686F6C6D6561  # "holmea"
_SQLITE_ATTEMPTS = 3


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` pointing at the api migrations (``url`` only for the command line)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision of the api migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def api_revision(engine: Engine) -> str | None:
    """The revision the database is at, ``None`` before the first upgrade."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _is_legacy(conn: Connection) -> bool:
    tables = set(inspect(conn).get_table_names())
    return VERSION_TABLE not in tables and "scores" in tables


def upgrade_api(engine: Engine, revision: str = "head") -> None:
    """Bring the api tables to ``revision``; safe to call from several processes at once."""
    config = alembic_config()
    attempts = _SQLITE_ATTEMPTS if engine.dialect.name == "sqlite" else 1
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                config.attributes["connection"] = conn
                if _is_legacy(conn):
                    command.stamp(config, BASELINE_REVISION)
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
