"""Prepared statements for the hot paths.

SQLAlchemy Core builds and compiles every statement (so the SQL is right for SQLite,
PostgreSQL and MySQL alike), but its per-execution machinery costs ~50 us a statement,
which is most of a claim's budget. ``PreparedStatement`` compiles a Core statement once per dialect
(including its bind and result type conversions) and then executes it directly on the
DBAPI cursor of the connection SQLAlchemy manages, inside SQLAlchemy's transaction.
Driver errors are re-raised as SQLAlchemy's, so callers handle one family of exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    # Bind names in driver order for positional paramstyles; None for named ones.
    positions: tuple[str, ...] | None
    # Values of binds the caller does not pass (literals the statement carries, e.g. LIMIT 1).
    defaults: Mapping[str, Any]
    results: tuple[Processor, ...]
    expanding: frozenset[str]
    # The binds that convert their values (most pass them to the driver as they are).
    converting: tuple[tuple[str, Callable[[Any], Any]], ...]


def _result_processor(type_: Any, dialect: Dialect) -> Processor:
    """A column's result conversion, known without a live cursor.

    Some drivers choose it from the database type code of the result (psycopg's floats),
    which is unknown at compile time; their values arrive already converted, so none is
    needed.
    """
    try:
        return cast(Processor, type_._cached_result_processor(dialect, None))
    except (TypeError, sa.exc.InvalidRequestError):
        return None


class PreparedStatement:
    """A Core statement compiled once per dialect, run on the raw DBAPI cursor."""

    __slots__ = ("_by_names", "_cache", "_expands", "statement")

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._cache: dict[tuple[str, tuple[tuple[str, int], ...]], _Compiled] = {}
        # A statement without IN lists (known once it was compiled) is looked up by the names
        # of the given parameters alone, which costs far less than their shape.
        self._expands: bool | None = None
        self._by_names: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def _compile(
        self, dialect: Dialect, keys: Sequence[str], sizes: Mapping[str, int]
    ) -> _Compiled:
        # column_keys: an INSERT/UPDATE without explicit values() sets exactly the given keys.
        compiled = cast(
            SQLCompiler, self.statement.compile(dialect=dialect, column_keys=list(keys))
        )
        expanding = frozenset(name for name, bind in compiled.binds.items() if bind.expanding)
        # Bind name -> the original bind parameter it came from (IN lists expand to name_1..n).
        origin = {name: name for name in compiled.binds}
        if expanding:
            # Render IN lists of exactly these lengths; cached per combination of lengths.
            dummy: dict[str, Any] = dict.fromkeys(compiled.binds)
            dummy.update({name: [None] * sizes[name] for name in expanding})
            state = compiled.construct_expanded_state(dummy)
            sql = state.statement
            positions = tuple(state.positiontup) if state.positiontup else None
            for name, expanded_names in state.parameter_expansion.items():
                origin.update(dict.fromkeys(expanded_names, name))
        else:
            sql = compiled.string
            positions = tuple(compiled.positiontup) if compiled.positiontup else None
        binds = {
            name: compiled.binds[source].type._cached_bind_processor(dialect)
            for name, source in origin.items()
        }
        columns = getattr(self.statement, "selected_columns", None)
        if columns is None:
            columns = getattr(self.statement, "_returning", ()) or ()
        results = tuple(_result_processor(c.type, dialect) for c in columns)
        defaults = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if name not in keys and not bind.expanding
        }
        converting = tuple((name, proc) for name, proc in binds.items() if proc is not None)
        return _Compiled(sql, positions, defaults, results, expanding, converting)

    def _params(
        self, compiled: _Compiled, params: Mapping[str, Any]
    ) -> Sequence[Any] | dict[str, Any]:
        flat: dict[str, Any] = dict(compiled.defaults)
        if compiled.expanding:
            for key, value in params.items():
                if key in compiled.expanding:
                    for index, item in enumerate(value):
                        flat[f"{key}_{index + 1}"] = item
                else:
                    flat[key] = value
        else:
            flat.update(params)
        for key, proc in compiled.converting:
            if key in flat:
                flat[key] = proc(flat[key])
        if compiled.positions is not None:
            return [flat[key] for key in compiled.positions]
        return flat

    def _compiled(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
        if self._expands is False:
            names = (dialect.name, tuple(params))
            compiled = self._by_names.get(names)
            if compiled is None:
                compiled = self._by_names[names] = self._compiled_by_shape(dialect, params)
            return compiled
        compiled = self._compiled_by_shape(dialect, params)
        self._expands = bool(compiled.expanding)
        return compiled

    def _compiled_by_shape(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
        # The compiled form depends on which parameters are given and on IN-list lengths.
        shape = tuple(
            sorted((k, len(v) if isinstance(v, list | tuple) else -1) for k, v in params.items())
        )
        key = (dialect.name, shape)
        compiled = self._cache.get(key)
        if compiled is None:
            sizes = {k: n for k, n in shape if n >= 0}
            compiled = self._compile(dialect, [k for k, _ in shape], sizes)
            self._cache[key] = compiled
        return compiled

    def _cursor(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, _Compiled]:
        dialect = conn.dialect
        compiled = self._compiled(dialect, params)
        args = self._params(compiled, params)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, args)
        except dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise sa.exc.DBAPIError.instance(
                compiled.sql, args, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        return cursor, compiled

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement once per parameter set in one driver call (``executemany``: one
        multi-row INSERT on MySQL, a pipeline on PostgreSQL, one C loop on SQLite).
        Every row must carry the same keys."""
        if not rows:
            return
        dialect = conn.dialect
        compiled = self._compiled(dialect, rows[0])
        args = [self._params(compiled, row) for row in rows]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(compiled.sql, args)
        except dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(
                compiled.sql, args, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        finally:
            cursor.close()

    def execute(self, conn: Connection, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement without a result set; returns the affected row count."""
        cursor, _ = self._cursor(conn, params or {})
        count = int(cursor.rowcount)
        cursor.close()
        return count

    def insert(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run an INSERT and return the new row's integer primary key."""
        cursor, _ = self._cursor(conn, params)
        if conn.dialect.name == "postgresql":
            new_id = int(cursor.fetchone()[0])
        else:
            new_id = int(cursor.lastrowid)
        cursor.close()
        return new_id

    def rows(
        self, conn: Connection, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run a query and return all rows as tuples, column types converted."""
        cursor, compiled = self._cursor(conn, params or {})
        raw = cursor.fetchall()
        cursor.close()
        procs = compiled.results
        if not any(procs):
            return [tuple(r) for r in raw]
        return [tuple(v if p is None else p(v) for p, v in zip(procs, r, strict=True)) for r in raw]

    def first(
        self, conn: Connection, params: Mapping[str, Any] | None = None
    ) -> tuple[Any, ...] | None:
        found = self.rows(conn, params)
        return found[0] if found else None

    def scalar(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]


def insert_returning_id(table: sa.Table) -> PreparedStatement:
    """A prepared INSERT whose new primary key ``PreparedStatement.insert`` returns on every
    backend."""
    stmt = table.insert()
    return _InsertStatement(stmt, stmt.returning(table.c.id))


class _InsertStatement(PreparedStatement):
    """Uses RETURNING on PostgreSQL (no lastrowid there) and lastrowid elsewhere."""

    __slots__ = ("_returning",)

    def __init__(self, plain: ClauseElement, returning: ClauseElement) -> None:
        super().__init__(plain)
        self._returning = PreparedStatement(returning)

    def insert(self, conn: Connection, params: Mapping[str, Any]) -> int:
        if conn.dialect.name == "postgresql":
            return self._returning.insert(conn, params)
        return super().insert(conn, params)


def many(conn: Connection, statement: PreparedStatement, rows: Iterable[Mapping[str, Any]]) -> None:
    """Execute a statement once per parameter set (e.g. a multi-row insert)."""
    statement.execute_many(conn, list(rows))
