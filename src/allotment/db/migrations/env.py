"""Alembic environment: always driven programmatically by allotment.db.migrate."""

from __future__ import annotations

from alembic import context

from allotment.db.metadata import all_tables

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=all_tables(), render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
