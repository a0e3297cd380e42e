"""The one SQLAlchemy ``MetaData`` every bounded context declares its tables on.

Each context owns its table module; ``TABLE_MODULES`` registers them by name so the shared
migrations (and the schema test) see every table without ``db`` importing a context.
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# The modules that declare tables on ``metadata``, one per bounded context.
TABLE_MODULES = (
    "allotment.placement.store.tables",
    "allotment.auth.tables",
    "allotment.scheduler.store",
)


def timestamps() -> list[sa.Column[object]]:
    """The ``created_at`` / ``updated_at`` pair most tables carry."""
    return [
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=True),
    ]


def all_tables() -> sa.MetaData:
    """``metadata`` with every registered context's tables declared on it."""
    for name in TABLE_MODULES:
        importlib.import_module(name)
    return metadata
