"""Resource classes and traits by name and id.

Both are small, read on every request and almost never change, so each process keeps them
in memory. The cache refreshes itself on a miss (another process may have just created
the name) and whenever the change log reports a catalog change.
Standard names come from ``os-resource-classes`` and ``os-traits`` and are synced into the
tables at start-up.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import os_resource_classes
import os_traits
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment.db.database import Database, utcnow
from allotment.placement.model import CUSTOM_PREFIX as CUSTOM_PREFIX
from allotment.placement.store.tables import consumer_types, resource_classes, traits

# Inserting the standard names races with other processes starting at once; each lost race
# leaves fewer names to insert, so a few attempts always finish.
_SYNC_ATTEMPTS = 5


class NameTable:
    """A name <-> id map over one table, cached in memory."""

    def __init__(self, db: Database, table: sa.Table) -> None:
        self.db = db
        self.table = table
        self._by_name: dict[str, int] = {}
        self._by_id: dict[int, str] = {}
        self._lock = threading.Lock()

    def reload(self, conn: Connection | None = None) -> None:
        stmt = sa.select(self.table.c.id, self.table.c.name)
        if conn is None:
            with self.db.read() as own:
                rows = own.execute(stmt).all()
        else:
            rows = conn.execute(stmt).all()
        by_name = {row.name: row.id for row in rows}
        with self._lock:
            self._by_name = by_name
            self._by_id = {v: k for k, v in by_name.items()}

    def id_of(self, name: str) -> int | None:
        found = self._by_name.get(name)
        if found is None:
            self.reload()
            found = self._by_name.get(name)
        return found

    def ids_of(self, names: Iterable[str]) -> tuple[dict[str, int], list[str]]:
        """Ids of the names that exist, and the names that do not (after one refresh)."""
        names = list(names)
        if any(n not in self._by_name for n in names):
            self.reload()
        found = {n: self._by_name[n] for n in names if n in self._by_name}
        return found, [n for n in names if n not in self._by_name]

    def name_of(self, ident: int) -> str:
        found = self._by_id.get(ident)
        if found is None:
            self.reload()
            found = self._by_id[ident]
        return found

    def ensure(self, name: str) -> int:
        """The id of ``name``, inserting it first when it does not exist yet.

        Runs in its own short transaction, so a writer that needs the name can look it up
        before its own transaction starts; a concurrent insert by another process is fine.
        """
        found = self.id_of(name)
        if found is not None:
            return found
        try:
            with self.db.write() as conn:
                conn.execute(self.table.insert(), {"name": name, "created_at": utcnow()})
        except sa.exc.IntegrityError:
            pass  # another process created it first
        self.reload()
        return self._by_name[name]

    def names(self) -> list[str]:
        return list(self._by_name)

    def sync(self, names: Iterable[str]) -> int:
        """Insert any of ``names`` that are missing; returns how many were added."""
        self.reload()
        # Keep the given order: standard classes get ids in os-resource-classes order, as
        # upstream, so lists ordered by id read the same.
        wanted = list(dict.fromkeys(names))
        missing = [n for n in wanted if n not in self._by_name]
        for attempt in range(_SYNC_ATTEMPTS):
            left = [n for n in wanted if n not in self._by_name]
            if not left:
                break
            try:
                self._insert_missing(left)
            except sa.exc.IntegrityError:
                # Another process starting at the same moment inserted some of them between
                # our look and our insert: read again and insert what is still missing.
                if attempt == _SYNC_ATTEMPTS - 1:
                    raise
            self.reload()
        return len(missing)

    def _insert_missing(self, names: list[str]) -> None:
        now = utcnow()
        with self.db.write() as conn:
            existing = {
                r.name
                for r in conn.execute(
                    sa.select(self.table.c.name).where(self.table.c.name.in_(names))
                )
            }
            rows = [{"name": n, "created_at": now} for n in names if n not in existing]
            if rows:
                conn.execute(self.table.insert(), rows)


class Catalog:
    """Resource classes, traits and consumer types of one database."""

    def __init__(self, db: Database) -> None:
        self.resource_classes = NameTable(db, resource_classes)
        self.traits = NameTable(db, traits)
        # Created on first use by an allocation write (microversion 1.38), as upstream.
        self.consumer_types = NameTable(db, consumer_types)

    def sync_standard(self) -> None:
        self.resource_classes.sync(os_resource_classes.STANDARDS)
        self.traits.sync(os_traits.get_traits())

    def reload(self) -> None:
        self.resource_classes.reload()
        self.traits.reload()
        self.consumer_types.reload()
