"""Alembic environment: always driven programmatically by allotment.placement.store.migrate."""

from __future__ import annotations

from alembic import context

from allotment.placement.store.tables import metadata
from allotment.scheduler import store as _scheduler_tables  # noqa: F401  (registers its tables)

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
