"""The unit of work every placement write runs in, and the typed changes it collects.

A write is one SQL transaction (``UnitOfWork.run``). While it runs, the per-resource code
emits what it changed as typed events on its ``WriteTxn``; just before the change is
recorded in the change log each listener's ``before_commit`` may read what it needs on the
transaction's own connection, and after the commit its ``after_commit`` applies the change
(the capacity index is such a listener). Listeners are injected, never built here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy.engine import Connection

from allotment.db.database import Database, utcnow
from allotment.placement.model import Inventory, Provider
from allotment.placement.store import changes
from allotment.placement.store.catalog import Catalog

LOG = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProviderCreated:
    """A new provider, with no inventory, usage, trait or aggregate yet."""

    provider: Provider

    @property
    def provider_ids(self) -> frozenset[int]:
        return frozenset((self.provider.id,))


@dataclass(frozen=True, slots=True)
class ProvidersMoved:
    """A provider renamed and/or re-parented; ``provider_ids`` includes the moved subtree."""

    provider_ids: frozenset[int]


@dataclass(frozen=True, slots=True)
class ProviderDeleted:
    provider_id: int

    @property
    def provider_ids(self) -> frozenset[int]:
        return frozenset((self.provider_id,))


@dataclass(frozen=True, slots=True)
class InventoriesSet:
    """A provider's complete inventories after the write, by class id, with the usage the
    write read (``inventories`` is None when a class could not be resolved to its id)."""

    provider: Provider
    inventories: Mapping[int, Inventory] | None
    used: Mapping[int, int]

    @property
    def provider_ids(self) -> frozenset[int]:
        return frozenset((self.provider.id,))


@dataclass(frozen=True, slots=True)
class TraitsSet:
    provider_id: int

    @property
    def provider_ids(self) -> frozenset[int]:
        return frozenset((self.provider_id,))


@dataclass(frozen=True, slots=True)
class AggregatesSet:
    provider_id: int

    @property
    def provider_ids(self) -> frozenset[int]:
        return frozenset((self.provider_id,))


@dataclass(frozen=True, slots=True)
class UsageChanged:
    """Allocations replaced or removed, and nothing else changed on ``provider_ids``:
    ``deltas`` is the change of used per (provider id, class id)."""

    provider_ids: frozenset[int]
    deltas: Mapping[tuple[int, int], int]


@dataclass(frozen=True, slots=True)
class ProvidersReshaped:
    """Inventories and allocations of several providers changed together (the reshaper)."""

    provider_ids: frozenset[int]


@dataclass(frozen=True, slots=True)
class CatalogChanged:
    """A custom resource class or trait was created, renamed or deleted."""

    name: str

    @property
    def provider_ids(self) -> frozenset[int]:
        return frozenset()


Change = (
    ProviderCreated
    | ProvidersMoved
    | ProviderDeleted
    | InventoriesSet
    | TraitsSet
    | AggregatesSet
    | UsageChanged
    | ProvidersReshaped
    | CatalogChanged
)


@dataclass
class WriteTxn:
    """One write transaction: its connection, its clock, and the changes it made."""

    conn: Connection
    now: datetime
    changes: list[Change] = field(default_factory=list)
    # What each listener prepared in ``before_commit`` for its own ``after_commit``.
    prepared: dict[object, object] = field(default_factory=dict)
    seq: int = 0  # the change-log position of the write (0: nothing recorded)

    def emit(self, change: Change) -> None:
        self.changes.append(change)

    @property
    def touched(self) -> set[int]:
        """Every provider the write changed."""
        out: set[int] = set()
        for change in self.changes:
            out |= change.provider_ids
        return out

    @property
    def scope(self) -> str:
        """The change-log scope: catalog-wide when a class or trait changed."""
        if any(isinstance(c, CatalogChanged) for c in self.changes):
            return changes.SCOPE_CATALOG
        return changes.SCOPE_PROVIDERS

    def usage_deltas(self) -> dict[tuple[int, int], int] | None:
        """The summed usage deltas when the write only changed usage, else None (a listener
        must then re-read the touched providers)."""
        if not self.changes or not all(isinstance(c, UsageChanged) for c in self.changes):
            return None
        merged: dict[tuple[int, int], int] = {}
        for change in self.changes:
            assert isinstance(change, UsageChanged)
            for key, delta in change.deltas.items():
                merged[key] = merged.get(key, 0) + delta
        return merged


class WriteListener(Protocol):
    """Told about every write of this process: before it is recorded, and after commit."""

    def before_commit(self, txn: WriteTxn) -> None: ...

    def after_commit(self, txn: WriteTxn) -> None: ...


@dataclass(frozen=True)
class AfterCommit:
    """A listener that is only told about committed writes."""

    call: Callable[[WriteTxn], None]

    def before_commit(self, txn: WriteTxn) -> None:
        pass

    def after_commit(self, txn: WriteTxn) -> None:
        self.call(txn)


class UnitOfWork:
    """Runs placement writes: one transaction each, recorded in the change log, announced
    to the listeners."""

    def __init__(
        self, db: Database, catalog: Catalog, listeners: Sequence[WriteListener] = ()
    ) -> None:
        self.db = db
        self.catalog = catalog
        self._listeners: list[WriteListener] = list(listeners)

    def add_listener(self, listener: WriteListener) -> None:
        self._listeners.append(listener)

    def run(self, work: Callable[[WriteTxn], T], *, retries: int = 0) -> T:
        """Run ``work`` in one write transaction that records its changes; tell the
        listeners after commit. ``retries``: how often a lost race is run again."""
        holder: list[WriteTxn] = []

        def attempt(conn: Connection) -> T:
            txn = WriteTxn(conn=conn, now=utcnow())
            holder[:] = [txn]
            result = work(txn)
            touched = txn.touched
            scope = txn.scope
            if touched or scope != changes.SCOPE_PROVIDERS:
                # Before the change is recorded, which on PostgreSQL and MySQL takes the lock
                # every writer queues on.
                for listener in self._listeners:
                    listener.before_commit(txn)
                txn.seq = changes.record(conn, touched, scope)
            return result

        result = self.db.transaction(attempt, retries=retries)
        txn = holder[0]
        if txn.scope == changes.SCOPE_CATALOG:
            # Other processes reload when they see the change; this one must not wait.
            self.catalog.reload()
        for listener in self._listeners:
            try:
                listener.after_commit(txn)
            except Exception:  # a listener bug must not turn a committed write into a 500
                LOG.exception("change listener failed; the index will catch up by polling")
        return result
