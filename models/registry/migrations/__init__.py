"""Alembic environment and revisions of the registry tables (run them with ``models.registry.migrate``)."""
