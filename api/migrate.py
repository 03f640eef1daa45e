"""Run the api's Alembic migrations programmatically at start-up (no ``alembic.ini`` needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, inspect

from models.registry.migrate import MigrationTree

__all__ = ["BASELINE_REVISION", "MIGRATIONS_DIR", "VERSION_TABLE", "api_revision", "head_revision", "upgrade_api"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_api"
#: The schema ``create_all`` made before migrations existed; such databases are stamped here, then upgraded.
BASELINE_REVISION = "0001_api_initial"
# Differs from the registry's advisory lock key, so the two trees never wait on each other.
API_TREE = MigrationTree(MIGRATIONS_DIR, VERSION_TABLE, pg_lock_key=0x686F6C6D6561)  # "holmea"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` pointing at the api migrations (``url`` only for the command line)."""
    return API_TREE.config(url)


def head_revision() -> str:
    """The newest revision of the api migrations."""
    return API_TREE.head()


def api_revision(engine: Engine) -> str | None:
    """The revision the database is at, ``None`` before the first upgrade."""
    return API_TREE.current(engine)


def _stamp_legacy(conn: Connection, config: Config) -> None:
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE not in tables and "scores" in tables:
        command.stamp(config, BASELINE_REVISION)


def upgrade_api(engine: Engine, revision: str = "head") -> None:
    """Bring the api tables to ``revision``; safe to call from several processes at once."""
    API_TREE.upgrade(engine, revision, prepare=_stamp_legacy)
