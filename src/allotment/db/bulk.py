"""Bulk loading into an empty database: a seeded cloud of thousands of hosts (the
benchmarks, the simulator) written straight into the tables, not through the API.

Rows go in as multi-row ``INSERT ... VALUES`` statements of a few thousand rows (one round
trip each, inside the caller's transaction), which is what makes 10,000 hosts take seconds
on PostgreSQL and MariaDB rather than one round trip a row.

Rows may carry their own ids (so that the rows of other tables can name them). PostgreSQL
does not move a ``SERIAL`` / identity column's sequence past explicit values, unlike
MySQL's ``AUTO_INCREMENT`` and SQLite's rowid; without ``insert_rows`` setting it, the
next row the API inserts would draw an id the load already used, fail on the primary key
and be retried as a lost race, once per used id (the first claim on a seeded 300-host
cloud took ~2 minutes burning through 3,000 consumer ids that way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# Rows per executemany call.
ROWS_PER_CALL = 20_000


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table``, in the caller's
    transaction; if they carry explicit ids, the next id the table hands out is past them."""
    if not rows:
        return
    for start in range(0, len(rows), ROWS_PER_CALL):
        conn.execute(table.insert(), list(rows[start : start + ROWS_PER_CALL]))
    column = table.autoincrement_column
    if column is not None and column.name in rows[0] and conn.dialect.name == "postgresql":
        conn.execute(
            sa.select(
                sa.func.setval(
                    sa.func.pg_get_serial_sequence(table.name, column.name),
                    sa.select(sa.func.max(column)).scalar_subquery(),
                )
            )
        )
