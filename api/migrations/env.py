"""Alembic environment of the api tables, with their own version table ``alembic_version_api``.

``api.migrate.upgrade_api`` passes an open connection in ``config.attributes``; the ``alembic`` command line
works too, given ``-x url=...`` or ``sqlalchemy.url`` (``alembic -c /dev/null -x url=... upgrade head`` with
``script_location`` set to this folder).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from api.tables import Base

VERSION_TABLE = "alembic_version_api"

config = context.config


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    # The registry's tables live in the same database under their own Alembic tree.
    return not (type_ == "table" and name is not None and (name.startswith("registry_") or name.startswith("alembic_")))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_name=_include_name,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=... or set sqlalchemy.url")
    return url


def run_offline() -> None:
    """Write the SQL instead of running it (``alembic upgrade head --sql``)."""
    context.configure(url=_url(), target_metadata=Base.metadata, version_table=VERSION_TABLE, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the given connection, or on a new engine for the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = create_engine(_url(), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            _configure(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
