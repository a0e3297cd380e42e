"""Keeping one process's capacity index in step with the ledger.

* At start-up (or when it fell too far behind) the index is built from every table.
* After each write of this process, ``on_write`` applies the rows of the providers the write
  touched, so this process's own writes show in its very next search. On SQLite the write
  reads them itself before it commits (``note_facts``); elsewhere ``on_write`` re-reads them.
* ``catch_up`` (run by a periodic task every ``index_poll_interval`` seconds) reads the change
  log from the last position applied and refreshes the providers other processes changed.
  If the log was pruned past that position, the index is rebuilt.

Refreshing re-reads a provider's current rows, so applying the same change twice, or late,
is harmless. Refreshes are serialized (read and apply under ``_refresh_lock``) so an older
read can never overwrite a newer one; searches only wait for the short apply step. A claim's
usage deltas are applied instead of a re-read, except to rows whose last read (a snapshot
at a known change-log position) already included that claim.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from allotment.db.database import Database
from allotment.placement.index import loader
from allotment.placement.index.capacity import IndexState
from allotment.placement.model import Inventory, Provider
from allotment.placement.store import changes
from allotment.placement.store.catalog import Catalog

if TYPE_CHECKING:
    from allotment.placement.service import WriteTxn

LOG = logging.getLogger(__name__)
_BATCH = 10000
USAGE_DELTAS = "usage_deltas"  # WriteTxn.notes topic (see service.WriteTxn)
# WriteTxn.notes topic: the complete rows of every provider the write touched, as of the
# write's own change-log position (a loader.Facts whose seq on_write fills in).
FACTS = "index_facts"


class CapacityIndex:
    """The index of one process and its sync with SQL. Use ``state`` under ``lock``."""

    def __init__(self, db: Database, catalog: Catalog) -> None:
        self.db = db
        self.catalog = catalog
        self.lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self.state = IndexState()
        self.seq = 0  # change-log position applied
        self.loaded = False
        # Sequence numbers of this process's writes already applied by on_write.
        self._own: set[int] = set()

    def ensure_loaded(self) -> None:
        if not self.loaded:
            self.rebuild(unless_loaded=True)

    def rebuild(self, *, unless_loaded: bool = False) -> None:
        """Build a fresh state from every table aside and swap it in."""
        with self._refresh_lock:
            if unless_loaded and self.loaded:  # built meanwhile by another thread
                return
            facts = loader.read_all(self.db)
            state = IndexState.build(facts)
            with self.lock:
                self.state = state
                self.seq = facts.seq
                self._own.clear()
                self.loaded = True
        LOG.info(
            "capacity index built: %d providers, %d resource classes, %d traits, %d aggregates "
            "(change-log position %d)",
            len(state.row_of_id),
            len(state.col_rc),
            len(state.bit_trait),
            len(state.agg_rows),
            facts.seq,
        )

    def refresh(self, provider_ids: Collection[int]) -> None:
        """Re-read some providers (deleted ones disappear)."""
        if not provider_ids:
            return
        with self._refresh_lock:
            known = self.state.row_of_id
            facts = loader.read_some(self.db, provider_ids, known=known.__contains__)
            with self.lock:
                try:
                    self.state.apply(facts, provider_ids)
                except Exception:
                    # A half-applied change must not serve searches: rebuild on next use.
                    self.loaded = False
                    raise

    def note_facts(self, txn: WriteTxn) -> None:
        """Inside a write transaction, before its change is recorded: read the rows of the
        providers it touched on its own connection, so ``on_write`` need not open a snapshot
        to read them again.

        Only on SQLite, where the transaction holds the database write lock, is what it reads
        exactly the state at its change-log position; a READ COMMITTED read on PostgreSQL or
        MySQL could miss a concurrent commit numbered before it, so there ``on_write``
        re-reads in a snapshot.
        """
        if self.db.dialect != "sqlite" or not self.loaded or not txn.touched:
            return
        if USAGE_DELTAS not in txn.notes and FACTS not in txn.notes:
            txn.notes[FACTS] = loader.read_providers(txn.conn, txn.touched)

    def note_inventories(
        self,
        txn: WriteTxn,
        provider: Provider,
        inventories: Mapping[int, Inventory],
        used: Mapping[int, int],
    ) -> None:
        """Note the rows of a provider whose inventories a write set, from what the write
        holds (its inventories by class id, and the usage it read), plus its traits and
        aggregates read on the write's connection. SQLite only, as ``note_facts``."""
        if self.db.dialect != "sqlite" or not self.loaded:
            return
        rp_id = provider.id
        facts = loader.read_links(txn.conn, rp_id)
        facts.providers = [(rp_id, provider.uuid, provider.root_id, provider.parent_id)]
        facts.inventories = [
            (
                rp_id,
                rc_id,
                inv.total,
                inv.reserved,
                inv.min_unit,
                inv.max_unit,
                inv.step_size,
                float(inv.allocation_ratio),
            )
            for rc_id, inv in inventories.items()
        ]
        facts.usages = [(rp_id, rc_id, amount) for rc_id, amount in used.items()]
        txn.notes[FACTS] = facts

    @staticmethod
    def note_created(txn: WriteTxn, provider: Provider) -> None:
        """Note the rows of the provider a write created (and did nothing else): it has no
        inventory, usage, trait or aggregate yet, on any backend."""
        row = (provider.id, provider.uuid, provider.root_id, provider.parent_id)
        txn.notes[FACTS] = loader.Facts(providers=[row])

    def on_write(self, txn: WriteTxn) -> None:
        """Listener for this process's committed writes: apply the usage deltas a claim
        noted, or the rows the write read, else re-read every touched provider."""
        if not self.loaded:
            return
        deltas = txn.notes.get(USAGE_DELTAS)
        facts = txn.notes.get(FACTS)
        reread = set(txn.touched)
        if deltas is not None:
            with self._refresh_lock, self.lock:
                reread = self.state.add_usage(deltas, txn.seq)
        elif facts is not None and self._apply_noted(facts, txn):
            reread = set()
        self.refresh(reread)
        if txn.seq:
            with self.lock:
                if txn.seq > self.seq:
                    self._own.add(txn.seq)

    def _apply_noted(self, facts: loader.Facts, txn: WriteTxn) -> bool:
        """Apply the rows a write noted; False when they cannot be used as they are (an
        unknown root or parent, or a row already read at a later position)."""
        facts.seq = txn.seq
        with self._refresh_lock, self.lock:
            if not self.state.takes(facts, txn.touched):
                return False
            try:
                self.state.apply(facts, txn.touched)
            except Exception:
                self.loaded = False
                raise
        return True

    def catch_up(self) -> None:
        """Apply the change log since the last position (rebuilding if it was pruned)."""
        if not self.loaded:
            self.rebuild()
            return
        while True:
            with self.db.read() as conn:
                found = changes.since(conn, self.seq, limit=_BATCH)
                pruned = bool(found) and found[0].seq > self.seq + 1
                if pruned:
                    oldest = changes.oldest(conn)
                    pruned = oldest is not None and oldest > self.seq + 1
            if pruned:
                LOG.warning(
                    "the change log was pruned past this process's position %d; rebuilding the "
                    "capacity index",
                    self.seq,
                )
                self.rebuild()
                return
            if not found:
                return
            with self.lock:
                own = set(self._own)
            provider_ids: set[int] = set()
            catalog = False
            for change in found:
                if change.seq in own:
                    continue
                catalog |= change.scope == changes.SCOPE_CATALOG
                provider_ids.update(change.provider_ids)
            if catalog:
                self.catalog.reload()
            self.refresh(provider_ids)
            with self.lock:
                self.seq = max(self.seq, found[-1].seq)
                self._own = {s for s in self._own if s > self.seq}
            if len(found) < _BATCH:
                return
