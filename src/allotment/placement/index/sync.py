"""Keeping one process's capacity index in step with the ledger.

* At start-up (or when it fell too far behind) the index is built from every table.
* The index listens to the unit of work: after each write of this process, ``after_commit``
  applies the rows of the providers the write touched, so this process's own writes show in
  its very next search. On SQLite the write reads them itself before it commits
  (``before_commit``); elsewhere ``after_commit`` re-reads them.
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
import time
from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np

from allotment.db.database import Database
from allotment.placement.candidates import CandidateSet, Need, Query, collect, search
from allotment.placement.candidates.explain import Step
from allotment.placement.candidates.explain import explain as explain_query
from allotment.placement.candidates.resolve import provider_mask
from allotment.placement.index import loader
from allotment.placement.index.capacity import IndexState, IntArray
from allotment.placement.model import Inventory, Provider
from allotment.placement.store import changes
from allotment.placement.store.catalog import Catalog
from allotment.placement.store.unit_of_work import InventoriesSet, ProviderCreated, WriteTxn

LOG = logging.getLogger(__name__)
_BATCH = 10000


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
        # When (time.time()) this process last had applied the whole change log; None
        # until the first build. /readyz and the lag metric read it.
        self.caught_up_at: float | None = None
        # Sequence numbers of this process's writes already applied by after_commit.
        self._own: set[int] = set()

    def ensure_loaded(self) -> None:
        if not self.loaded:
            self.rebuild(unless_loaded=True)

    def rebuild(self, *, unless_loaded: bool = False) -> None:
        """Build a fresh state from every table aside and swap it in."""
        with self._refresh_lock:
            if unless_loaded and self.loaded:  # built meanwhile by another thread
                return
            started = time.time()
            facts = loader.read_all(self.db)
            state = IndexState.build(facts)
            with self.lock:
                self.state = state
                self.seq = facts.seq
                self._own.clear()
                self.loaded = True
                self.caught_up_at = started
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

    # -- locked queries (the only way in for callers: state and lock stay private) ------

    def instances_that_fit(
        self, flavors: Sequence[Mapping[str, int]], excluded_trait: str | None = None
    ) -> tuple[list[str], IntArray]:
        """How many more instances of each flavor (resource class -> amount) fit on each
        root provider: ``(root uuids, counts)`` with counts shaped (flavors, roots). An
        instance takes each class whole from one provider of the tree (as the unsuffixed
        request group does), so a tree counts ``sum(free // amount)`` per class over the
        providers whose min/max unit and step admit the amount, and the flavor the
        smallest of those. Roots with ``excluded_trait`` count 0. One vectorized pass per
        flavor and class."""
        with self.lock:
            state = self.state
            n = state.size
            alive = state.alive[:n]
            roots = np.flatnonzero(alive & (state.parent[:n] < 0))
            position = np.full(n, -1, np.int64)
            position[roots] = np.arange(len(roots))
            of_root = np.where(alive, position[np.maximum(state.root[:n], 0)], -1)
            counts = np.zeros((len(flavors), len(roots)), np.int64)
            for f, amounts in enumerate(flavors):
                fit = np.full(len(roots), np.iinfo(np.int64).max, np.int64)
                for name, amount in amounts.items():
                    rc_id = self.catalog.resource_classes.id_of(name)
                    if rc_id is None or rc_id not in state.rc_col:
                        fit[:] = 0
                        break
                    col = state.rc_col[rc_id]
                    ok = state.inv[col, :n] & (of_root >= 0)
                    ok &= state.min_unit[col, :n] <= amount
                    ok &= state.max_unit[col, :n] >= amount
                    ok &= (amount % state.step[col, :n]) == 0
                    rows = np.flatnonzero(ok)
                    per_tree = np.zeros(len(roots), np.int64)
                    np.add.at(
                        per_tree, of_root[rows], np.maximum(state.free[col, rows], 0) // amount
                    )
                    fit = np.minimum(fit, per_tree)
                counts[f] = fit if amounts else 0
            trait_id = (
                self.catalog.traits.id_of(excluded_trait) if excluded_trait is not None else None
            )
            if trait_id is not None and len(roots):
                counts[:, state.any_trait((trait_id,))[roots]] = 0
            uuids = [str(u) for u in state.uuids[roots]]
        return uuids, counts

    def provider_ids_having(self, need: Need) -> set[int]:
        """Ids of the providers that satisfy ``need`` on their own (``resources=`` etc.)."""
        self.ensure_loaded()
        with self.lock:
            state = self.state
            rows = provider_mask(state, need).nonzero()[0]
            return set(state.ids[rows].tolist())

    def candidates(
        self,
        query: Query,
        *,
        class_name: Callable[[int], str],
        trait_name: Callable[[int], str],
    ) -> CandidateSet:
        """The allocation candidates of ``query``, with summaries of the providers involved."""
        self.ensure_loaded()
        with self.lock:
            state = self.state
            found = search(state, query)
            return collect(state, query, found, class_name=class_name, trait_name=trait_name)

    def aggregate_members(self, aggregate_uuid: str) -> set[str]:
        """Uuids of the providers in an aggregate."""
        self.ensure_loaded()
        with self.lock:
            state = self.state
            agg_id = state.agg_by_uuid.get(aggregate_uuid)
            if agg_id is None:
                return set()
            return {str(u) for u in state.uuids[state.aggregate_rows([agg_id])]}

    def explain(self, query: Query, trait_name: Callable[[int], str]) -> tuple[int, list[Step]]:
        """Trees considered, then how many each constraint of ``query`` left."""
        self.ensure_loaded()
        with self.lock:
            return explain_query(self.state, query, trait_name)

    # -- the unit of work's listener ---------------------------------------------------

    def before_commit(self, txn: WriteTxn) -> None:
        """Inside a write transaction, before its change is recorded: note the rows of the
        providers it touched, so ``after_commit`` need not open a snapshot to read them.

        A created provider's rows are known on any backend. Otherwise only on SQLite, where
        the transaction holds the database write lock, is what it reads on its own connection
        exactly the state at its change-log position; a READ COMMITTED read on PostgreSQL or
        MySQL could miss a concurrent commit numbered before it, so there ``after_commit``
        re-reads in a snapshot. A write that only changed usage needs no rows (its deltas
        are applied as they are).
        """
        facts = self._facts_of(txn)
        if facts is not None:
            txn.prepared[self] = facts

    def _facts_of(self, txn: WriteTxn) -> loader.Facts | None:
        only = txn.changes[0] if len(txn.changes) == 1 else None
        if isinstance(only, ProviderCreated):
            p = only.provider
            return loader.Facts(providers=[(p.id, p.uuid, p.root_id, p.parent_id)])
        if self.db.dialect != "sqlite" or not self.loaded or not txn.touched:
            return None
        if txn.usage_deltas() is not None:
            return None
        if isinstance(only, InventoriesSet) and only.inventories is not None:
            return self._inventory_facts(txn, only.provider, only.inventories, only.used)
        return loader.read_providers(txn.conn, txn.touched)

    @staticmethod
    def _inventory_facts(
        txn: WriteTxn,
        provider: Provider,
        inventories: Mapping[int, Inventory],
        used: Mapping[int, int],
    ) -> loader.Facts:
        """The rows of a provider whose inventories a write set, from what the write holds
        (its inventories by class id, and the usage it read), plus its traits and
        aggregates read on the write's connection."""
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
        return facts

    def after_commit(self, txn: WriteTxn) -> None:
        """Apply this process's committed write: the usage deltas of a claim, or the rows
        noted before commit, else re-read every touched provider."""
        if not self.loaded:
            return
        deltas = txn.usage_deltas()
        facts = txn.prepared.get(self)
        reread = txn.touched
        if deltas is not None:
            with self._refresh_lock, self.lock:
                reread = self.state.add_usage(deltas, txn.seq)
        elif isinstance(facts, loader.Facts) and self._apply_noted(facts, txn):
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
            started = time.time()
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
                self.caught_up_at = started
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
                self.caught_up_at = started
                return
