"""Revisions of the registry tables, oldest first by ``down_revision``."""
