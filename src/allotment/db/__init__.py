"""Shared SQL infrastructure: the ``Database``, the one metadata every bounded context
declares its tables on, prepared statements and the Alembic migrations."""

from allotment.db.database import AnyRow, Database, RetryTransaction, utcnow

__all__ = ["AnyRow", "Database", "RetryTransaction", "utcnow"]
