"""The Placement domain operations. The HTTP API calls these; so does the scheduler when
placement is embedded in the same process.

Every write runs in one SQL transaction (``_write``), appends to the change log in that
transaction, and after commit tells the in-process listeners (the capacity index) exactly
which providers changed.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment import errors
from allotment.db.database import Database, RetryTransaction, utcnow
from allotment.placement.candidates import CandidateSet, collect, search
from allotment.placement.candidates import resolve as candidate_resolve
from allotment.placement.candidates.explain import Step as ExplainStep
from allotment.placement.candidates.explain import explain as explain_query
from allotment.placement.index import CapacityIndex
from allotment.placement.model import (
    CUSTOM_PREFIX,
    UNKNOWN_CONSUMER_TYPE,
    Allocation,
    CandidateRequest,
    CatalogEntry,
    ConsumerWrite,
    Inventory,
    Provider,
    RequestGroup,
    Usage,
)
from allotment.placement.store import aggregates as aggregate_store
from allotment.placement.store import allocations as allocation_store
from allotment.placement.store import changes
from allotment.placement.store import inventories as inventory_store
from allotment.placement.store import providers as provider_store
from allotment.placement.store import resource_classes as rc_store
from allotment.placement.store import traits as trait_store
from allotment.placement.store.catalog import Catalog

LOG = logging.getLogger(__name__)
T = TypeVar("T")

UNSET: Any = object()  # "the caller did not send this field" (differs from an explicit null)

GENERATION_CHANGED = (
    "Resource provider's generation already changed. Please update the generation and try again."
)


@dataclass
class WriteTxn:
    """One write transaction: its connection, its clock, and what it changed."""

    conn: Connection
    now: datetime
    touched: set[int] = field(default_factory=set)
    scope: str = changes.SCOPE_PROVIDERS
    # Facts a listener can apply without reading SQL again, by topic. "usage_deltas":
    # {(provider id, class id): change of used}, noted only by writes whose sole effect on
    # the touched providers is their usage (the capacity index applies them as they are).
    notes: dict[str, Any] = field(default_factory=dict)
    seq: int = 0

    def touch(self, *provider_ids: int) -> None:
        self.touched.update(provider_ids)


Listener = Callable[[WriteTxn], None]


class PlacementService:
    def __init__(
        self,
        db: Database,
        catalog: Catalog | None = None,
        *,
        randomize_candidates: bool = False,
        max_candidates: int = 0,
        all_permutations: bool = False,
    ) -> None:
        self.db = db
        self.catalog = catalog or Catalog(db)
        self._listeners: list[Listener] = []
        # Reads that scan capacity are served from this process's index (see index/).
        self.index = CapacityIndex(db, self.catalog)
        self.add_listener(self.index.on_write)
        self.randomize_candidates = randomize_candidates
        self.max_candidates = max_candidates
        self.all_permutations = all_permutations

    # -- plumbing -------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` after every committed write of this process."""
        self._listeners.append(listener)

    def _write(self, work: Callable[[WriteTxn], T], *, retries: int = 0) -> T:
        """Run ``work`` in one write transaction that records the change; notify after commit."""
        holder: list[WriteTxn] = []

        def run(conn: Connection) -> T:
            txn = WriteTxn(conn=conn, now=utcnow())
            holder[:] = [txn]
            result = work(txn)
            if txn.touched or txn.scope != changes.SCOPE_PROVIDERS:
                # Before the change is recorded, which on PostgreSQL and MySQL takes the lock
                # every writer queues on.
                self.index.note_facts(txn)
                txn.seq = changes.record(conn, txn.touched, txn.scope)
            return result

        result = self.db.transaction(run, retries=retries)
        txn = holder[0]
        if txn.scope == changes.SCOPE_CATALOG:
            # Other processes reload when they see the change; this one must not wait.
            self.catalog.reload()
        for listener in self._listeners:
            try:
                listener(txn)
            except Exception:  # a listener bug must not turn a committed write into a 500
                LOG.exception("change listener failed; the index will catch up by polling")
        return result

    # -- resource providers ---------------------------------------------------------------

    def get_provider(self, uuid: str) -> Provider:
        with self.db.read() as conn:
            return provider_store.require(conn, uuid)

    def list_providers(
        self,
        *,
        name: str | None = None,
        uuid: str | None = None,
        in_tree: str | None = None,
        having: RequestGroup | None = None,
    ) -> list[Provider]:
        """Providers matching every filter. ``having`` (resources with capacity left, traits,
        aggregates, each on the provider itself) is answered by the capacity index."""
        ids = None
        if having is not None:
            need = candidate_resolve.need_of(self.catalog, having)
            self.index.ensure_loaded()
            with self.index.lock:
                state = self.index.state
                rows = candidate_resolve.provider_mask(state, need).nonzero()[0]
                ids = set(state.ids[rows].tolist())
            if not ids:
                return []
        with self.db.read() as conn:
            root_id = None
            if in_tree is not None:
                anchor = provider_store.get_by_uuid(conn, in_tree)
                if anchor is None:
                    return []
                root_id = anchor.root_id
            # A long IN list costs more than filtering the rows in Python.
            in_sql = ids if ids is not None and len(ids) <= 1000 else None
            found = provider_store.list_providers(
                conn, name=name, uuid=uuid, root_id=root_id, ids=in_sql
            )
        if ids is not None and in_sql is None:
            found = [p for p in found if p.id in ids]
        return found

    def create_provider(
        self, *, name: str, uuid: str | None = None, parent_uuid: str | None = None
    ) -> Provider:
        rp_uuid = str(uuidlib.UUID(uuid)) if uuid else str(uuidlib.uuid4())
        parent_uuid = str(uuidlib.UUID(parent_uuid)) if parent_uuid else None

        def work(txn: WriteTxn) -> Provider:
            parent = None
            if parent_uuid is not None:
                if parent_uuid == rp_uuid:
                    raise errors.InvalidInput(
                        f'Unable to create resource provider "{name}", {rp_uuid}: Object action '
                        "create failed because: parent provider UUID cannot be same as UUID. "
                        "Please set parent provider UUID to None if there is no parent."
                    )
                parent = provider_store.get_by_uuid(txn.conn, parent_uuid)
                if parent is None:
                    raise errors.InvalidInput(
                        f'Unable to create resource provider "{name}", {rp_uuid}: Object action '
                        "create failed because: parent provider UUID does not exist."
                    )
                provider_store.lock(txn.conn, [parent.id])
            created = provider_store.create(
                txn.conn, uuid=rp_uuid, name=name, parent=parent, now=txn.now
            )
            txn.touch(created.id)
            self.index.note_created(txn, created)
            return created

        try:
            return self._write(work)
        except sa.exc.IntegrityError:
            with self.db.read() as conn:
                dupes = provider_store.conflicting_fields(conn, uuid=rp_uuid, name=name)
            if not dupes:
                raise
            raise errors.DuplicateName(
                f"Conflicting resource provider {', '.join(dupes)} already exists."
            ) from None

    def update_provider(
        self, uuid: str, *, name: str, parent_uuid: str | None = UNSET, allow_reparenting: bool
    ) -> Provider:
        def work(txn: WriteTxn) -> Provider:
            conn = txn.conn
            current = provider_store.require(conn, uuid)
            provider_store.lock(conn, [current.id])
            parent: Provider | None
            if parent_uuid is UNSET or parent_uuid == current.parent_uuid:
                parent = (
                    None
                    if current.parent_uuid is None
                    else provider_store.require(conn, current.parent_uuid)
                )
            elif parent_uuid is None:
                if not allow_reparenting:
                    raise self._save_error(
                        uuid, "un-parenting a provider is not currently allowed."
                    )
                parent = None
            else:
                parent = provider_store.get_by_uuid(conn, parent_uuid)
                if parent is None:
                    raise errors.InvalidInput(
                        f"Unable to save resource provider {uuid}: Object action create failed "
                        "because: parent provider UUID does not exist."
                    )
                if current.parent_id is not None and not allow_reparenting:
                    raise self._save_error(
                        uuid, "re-parenting a provider is not currently allowed."
                    )
                if parent.id == current.id or parent.id in provider_store.descendant_ids(
                    conn, current
                ):
                    raise self._save_error(
                        uuid, "creating loop in the provider tree is not allowed."
                    )
            moved = provider_store.set_name_and_parent(
                conn, current, name=name, parent=parent, now=txn.now
            )
            txn.touch(current.id, *moved)
            return provider_store.require(conn, uuid)

        try:
            return self._write(work)
        except sa.exc.IntegrityError:
            raise errors.DuplicateName(
                f"Conflicting resource provider {name} already exists."
            ) from None

    @staticmethod
    def _save_error(uuid: str, reason: str) -> errors.InvalidInput:
        return errors.InvalidInput(
            f"Unable to save resource provider {uuid}: "
            f"Object action update failed because: {reason}"
        )

    def delete_provider(self, uuid: str) -> None:
        def work(txn: WriteTxn) -> None:
            conn = txn.conn
            current = provider_store.get_by_uuid(conn, uuid)
            if current is None:
                raise errors.NotFound(f"No resource provider with uuid {uuid} found for delete")
            provider_store.lock(conn, [current.id])
            if provider_store.has_children(conn, current.id):
                raise errors.CannotDeleteParent(
                    f"Unable to delete parent resource provider {uuid}: It has child resource "
                    "providers."
                )
            if provider_store.has_allocations(conn, current.id):
                raise errors.ProviderInUse(
                    f"Unable to delete resource provider {uuid}: Resource provider has allocations."
                )
            provider_store.delete(conn, current.id)
            txn.touch(current.id)

        self._write(work)

    # -- inventories ----------------------------------------------------------------------

    def get_inventories(self, uuid: str) -> tuple[Provider, dict[str, Inventory]]:
        with self.db.read() as conn:
            provider = provider_store.get_by_uuid(conn, uuid)
            if provider is None:
                raise errors.NotFound(
                    f"No resource provider with uuid {uuid} found : Resource could not be found."
                )
            return provider, inventory_store.for_provider(
                conn, provider.id, self.catalog.resource_classes
            )

    def change_inventories(
        self,
        uuid: str,
        *,
        generation: int | None,
        put: dict[str, Inventory] | None = None,
        delete: set[str] | None = None,
        replace_all: bool = False,
        create_only: bool = False,
        update_only: bool = False,
    ) -> tuple[Provider, dict[str, Inventory]]:
        """Add, update and/or delete inventories of one provider in one transaction.

        ``generation`` is the provider generation the caller last saw (None: whatever it is
        now). ``replace_all`` removes every class not in ``put``; ``create_only`` refuses to
        touch an existing class and ``update_only`` to add a new one. Removing a class that has
        allocations is refused (InventoryInUse); shrinking a class below what is allocated is
        allowed, as upstream, and logged.
        """
        put = put or {}
        delete = set(delete or ())
        classes = self.catalog.resource_classes
        rc_ids, unknown = classes.ids_of([*put, *delete])
        if unknown:
            raise errors.UnknownResourceClass(sorted(unknown)[0])

        def work(txn: WriteTxn) -> tuple[Provider, dict[str, Inventory]]:
            conn = txn.conn
            provider = provider_store.require(conn, uuid)
            provider_store.lock(conn, [provider.id])
            if generation is not None and generation != provider.generation:
                raise errors.ConcurrentUpdate("resource provider generation conflict")
            custom = {rc_ids[n] for n in put if n.startswith(CUSTOM_PREFIX)}
            gone = custom - rc_store.share_existing(conn, custom)
            if gone:  # deleted by another process since our cache learnt it
                classes.reload()
                by_id = {v: k for k, v in rc_ids.items()}
                raise errors.UnknownResourceClass(by_id[min(gone)])
            current = inventory_store.for_provider(conn, provider.id, classes)
            for name in sorted((delete | (set(put) if update_only else set())) - set(current)):
                raise errors.InventoryNotFound(name)
            if create_only and set(put) & set(current):
                raise errors.ConcurrentUpdate(
                    f"Update conflict: the provider already has an inventory of class "
                    f"{sorted(set(put) & set(current))[0]}; use PUT to change it."
                )
            removing = delete | (set(current) - set(put) if replace_all else set())
            used = inventory_store.usage(conn, provider.id)
            removing_ids = sorted((classes.id_of(n) or 0, n) for n in removing)
            in_use = [name for rc_id, name in removing_ids if used.get(rc_id, 0) > 0]
            if in_use:
                raise errors.InventoryInUse(
                    f"Inventory for '{', '.join(in_use)}' on resource provider "
                    f"'{provider.uuid}' in use."
                )
            added = {rc_ids[name]: inv for name, inv in put.items() if name not in current}
            inventory_store.insert_many(conn, provider.id, added, txn.now)
            for name, inventory in put.items():
                rc_id = rc_ids[name]
                if name in current:
                    inventory_store.update(conn, provider.id, rc_id, inventory, txn.now)
                if used.get(rc_id, 0) > inventory.capacity:
                    LOG.warning(
                        "resource provider %s is now over capacity for %s: %d used, capacity %d",
                        provider.uuid,
                        name,
                        used[rc_id],
                        inventory.capacity,
                    )
            inventory_store.delete(conn, provider.id, [rc_id for rc_id, _ in removing_ids])
            generation_now = provider_store.bump_generation(conn, provider, txn.now)
            txn.touch(provider.id)
            after = {n: inv for n, inv in current.items() if n not in removing}
            after.update(
                {
                    n: replace(
                        inv,
                        created_at=current[n].created_at if n in current else txn.now,
                        updated_at=txn.now,
                    )
                    for n, inv in put.items()
                }
            )
            noted = {cid: after[n] for n in after if (cid := classes.id_of(n)) is not None}
            if len(noted) == len(after):
                self.index.note_inventories(txn, provider, noted, used)
            return replace(provider, generation=generation_now, updated_at=txn.now), after

        return self._write(work)

    # -- resource classes -----------------------------------------------------------------

    def list_resource_classes(self) -> list[CatalogEntry]:
        """Every resource class: the standard ones in os-resource-classes order, then custom."""
        with self.db.read() as conn:
            return rc_store.all_classes(conn)

    def get_resource_class(self, name: str) -> CatalogEntry:
        with self.db.read() as conn:
            found = rc_store.get(conn, name)
        if found is None:
            raise errors.ResourceClassNotFound(name)
        return found

    def create_resource_class(self, name: str) -> CatalogEntry:
        """Create the custom class ``name``; ResourceClassExists when it is taken."""
        _require_custom(name, "resource class")

        def work(txn: WriteTxn) -> CatalogEntry:
            if rc_store.get(txn.conn, name) is not None:
                raise errors.ResourceClassExists(name)
            txn.scope = changes.SCOPE_CATALOG
            return rc_store.create(txn.conn, name, txn.now)

        try:
            return self._write(work)
        except sa.exc.IntegrityError:  # created by a concurrent request
            raise errors.ResourceClassExists(name) from None

    def ensure_resource_class(self, name: str) -> tuple[CatalogEntry, bool]:
        """The custom class ``name``, created when missing; True when this call created it."""
        _require_custom(name, "resource class")
        with self.db.read() as conn:
            found = rc_store.get(conn, name)
        if found is not None:
            return found, False
        try:
            return self.create_resource_class(name), True
        except errors.ResourceClassExists:
            return self.get_resource_class(name), False

    def rename_resource_class(self, name: str, new_name: str) -> CatalogEntry:
        """Rename a custom class; its inventories and allocations follow (they refer to its id)."""
        _require_custom(new_name, "resource class")

        def work(txn: WriteTxn) -> CatalogEntry:
            current = rc_store.get(txn.conn, name, lock=True)
            if current is None:
                raise errors.ResourceClassNotFound(name)
            if not current.is_custom:
                raise errors.StandardNameReadOnly(f"Cannot update standard resource class {name}.")
            if new_name != name and rc_store.get(txn.conn, new_name) is not None:
                raise errors.ResourceClassExists(new_name)
            txn.scope = changes.SCOPE_CATALOG
            return rc_store.rename(txn.conn, current, new_name, txn.now)

        try:
            return self._write(work)
        except sa.exc.IntegrityError:
            raise errors.ResourceClassExists(new_name) from None

    def delete_resource_class(self, name: str) -> None:
        """Delete a custom class no provider has inventory of."""

        def work(txn: WriteTxn) -> None:
            current = rc_store.get(txn.conn, name, lock=True)
            if current is None:
                raise errors.ResourceClassNotFound(name)
            if not current.is_custom:
                raise errors.StandardNameReadOnly(f"Cannot delete standard resource class {name}.")
            if rc_store.in_use(txn.conn, current.id):
                raise errors.ResourceClassInUse(name)
            rc_store.delete(txn.conn, current.id)
            txn.scope = changes.SCOPE_CATALOG

        self._write(work)

    # -- traits ---------------------------------------------------------------------------

    def list_traits(
        self,
        *,
        names: Collection[str] | None = None,
        prefix: str | None = None,
        associated: bool | None = None,
    ) -> list[CatalogEntry]:
        """Traits in id order, filtered by exact names, a literal name prefix and/or whether
        any provider has them. A few hundred rows: filtering them here beats per-filter SQL."""
        with self.db.read() as conn:
            found = trait_store.all_traits(conn)
            used = trait_store.associated_ids(conn) if associated is not None else set()
        if names is not None:
            wanted = set(names)
            found = [t for t in found if t.name in wanted]
        if prefix is not None:
            found = [t for t in found if t.name.startswith(prefix)]
        if associated is not None:
            found = [t for t in found if (t.id in used) == associated]
        return found

    def get_trait(self, name: str) -> CatalogEntry:
        with self.db.read() as conn:
            found = trait_store.get(conn, name)
        if found is None:
            raise errors.TraitNotFound(name)
        return found

    def ensure_trait(self, name: str) -> tuple[CatalogEntry, bool]:
        """The custom trait ``name``, created when missing; True when this call created it."""
        _require_custom(name, "trait")
        with self.db.read() as conn:
            found = trait_store.get(conn, name)
        if found is not None:
            return found, False

        def work(txn: WriteTxn) -> tuple[CatalogEntry, bool]:
            existing = trait_store.get(txn.conn, name)
            if existing is not None:
                return existing, False
            txn.scope = changes.SCOPE_CATALOG
            return trait_store.create(txn.conn, name, txn.now), True

        try:
            return self._write(work)
        except sa.exc.IntegrityError:  # created by a concurrent request
            return self.get_trait(name), False

    def delete_trait(self, name: str) -> None:
        """Delete a custom trait no provider has."""

        def work(txn: WriteTxn) -> None:
            current = trait_store.get(txn.conn, name, lock=True)
            if current is None:
                raise errors.TraitNotFound(name)
            if not current.is_custom:
                raise errors.StandardNameReadOnly(f"Cannot delete standard trait {name}.")
            if trait_store.in_use(txn.conn, current.id):
                raise errors.TraitInUse(name)
            trait_store.delete(txn.conn, current.id)
            txn.scope = changes.SCOPE_CATALOG

        self._write(work)

    def get_provider_traits(self, uuid: str) -> tuple[Provider, list[CatalogEntry]]:
        with self.db.read() as conn:
            provider = provider_store.require(conn, uuid)
            return provider, trait_store.for_provider(conn, provider.id)

    def set_provider_traits(
        self, uuid: str, names: Sequence[str], *, generation: int | None
    ) -> tuple[Provider, list[CatalogEntry]]:
        """Replace the provider's traits with ``names``.

        ``generation`` is the provider generation the caller last saw (None: whatever it is
        now). The generation moves only when the set of traits actually changes, as upstream.
        Returns the provider as it is now and its traits in id order.
        """
        wanted = list(dict.fromkeys(names))

        def work(txn: WriteTxn) -> tuple[Provider, list[CatalogEntry]]:
            conn = txn.conn
            provider = provider_store.require(conn, uuid)
            provider_store.lock(conn, [provider.id])
            if generation is not None and generation != provider.generation:
                raise errors.ConcurrentUpdate(GENERATION_CHANGED)
            found = trait_store.share_by_names(conn, wanted)
            known = {t.name for t in found}
            missing = [n for n in wanted if n not in known]
            if missing:
                raise errors.UnknownTraits(missing)
            current = {t.id for t in trait_store.for_provider(conn, provider.id)}
            target = {t.id for t in found}
            if target == current:
                return provider, found
            trait_store.remove_from_provider(conn, provider.id, current - target)
            trait_store.add_to_provider(conn, provider.id, target - current, txn.now)
            generation_now = provider_store.bump_generation(conn, provider, txn.now)
            txn.touch(provider.id)
            return replace(provider, generation=generation_now, updated_at=txn.now), found

        return self._write(work)

    # -- aggregates -----------------------------------------------------------------------

    def get_provider_aggregates(self, uuid: str) -> tuple[Provider, list[str]]:
        """The provider and the uuids of its aggregates (in the order they were first seen)."""
        with self.db.read() as conn:
            provider = provider_store.require(conn, uuid)
            return provider, list(aggregate_store.for_provider(conn, provider.id).values())

    def set_provider_aggregates(
        self, uuid: str, aggregates: Sequence[str], *, generation: int | None
    ) -> tuple[Provider, list[str]]:
        """Replace the provider's aggregates; aggregates never seen before are created.

        With ``generation`` (microversion 1.19 on) the provider generation is checked and
        always moves on, as upstream; without it (the older API) it is neither.
        Returns the provider as it is now and the aggregates as stored.
        """
        wanted = list(dict.fromkeys(_aggregate_uuid(u) for u in aggregates))

        def work(txn: WriteTxn) -> tuple[Provider, list[str]]:
            conn = txn.conn
            provider = provider_store.require(conn, uuid)
            provider_store.lock(conn, [provider.id])
            if generation is not None and generation != provider.generation:
                raise errors.ConcurrentUpdate(GENERATION_CHANGED)
            current = aggregate_store.for_provider(conn, provider.id)
            have = set(current.values())
            keep = set(wanted)
            try:
                new_ids = aggregate_store.ensure(
                    conn, [u for u in wanted if u not in have], txn.now
                )
            except sa.exc.IntegrityError:  # another request created one of them just now
                raise RetryTransaction from None
            aggregate_store.dissociate(
                conn, provider.id, [i for i, u in current.items() if u not in keep]
            )
            aggregate_store.associate(conn, provider.id, new_ids.values(), txn.now)
            if generation is None:
                if new_ids or have - keep:
                    txn.touch(provider.id)
                return provider, wanted
            generation_now = provider_store.bump_generation(conn, provider, txn.now)
            txn.touch(provider.id)
            return replace(provider, generation=generation_now, updated_at=txn.now), wanted

        return self._write(work, retries=3)

    # -- allocation candidates ------------------------------------------------------------

    def allocation_candidates(self, request: CandidateRequest) -> CandidateSet:
        """Every way to satisfy ``request`` now (or ``request.limit`` of them, spread over
        trees), with summaries of the providers involved. Served from the capacity index."""
        limit = request.limit or self.max_candidates or None
        query = candidate_resolve.query_of(
            self.catalog,
            request,
            limit=limit,
            randomize=self.randomize_candidates,
            distinct=not self.all_permutations,
        )
        self.index.ensure_loaded()
        with self.index.lock:
            state = self.index.state
            found = search(state, query)
            return collect(
                state,
                query,
                found,
                class_name=self.catalog.resource_classes.name_of,
                trait_name=self.catalog.traits.name_of,
            )

    def aggregate_members(self, aggregate_uuid: str) -> set[str]:
        """Uuids of the providers in an aggregate. Served from the capacity index."""
        self.index.ensure_loaded()
        with self.index.lock:
            state = self.index.state
            agg_id = state.agg_by_uuid.get(aggregate_uuid)
            if agg_id is None:
                return set()
            return {str(u) for u in state.uuids[state.aggregate_rows([agg_id])]}

    def explain_candidates(self, request: CandidateRequest) -> tuple[int, list[ExplainStep]]:
        """Why ``request`` finds no candidate: trees considered, then how many each
        constraint left (see ``candidates.explain``). Served from the capacity index."""
        query = candidate_resolve.query_of(self.catalog, request, limit=None, randomize=False)
        self.index.ensure_loaded()
        with self.index.lock:
            return explain_query(self.index.state, query, self.catalog.traits.name_of)

    # -- allocations ----------------------------------------------------------------------

    def get_consumer_allocations(self, consumer_uuid: str) -> list[Allocation]:
        """A consumer's allocations (empty when it has none, or does not exist)."""
        with self.db.read() as conn:
            return allocation_store.for_consumer(
                conn, consumer_uuid, self.catalog.resource_classes, self.catalog.consumer_types
            )

    def get_provider_allocations(self, uuid: str) -> tuple[Provider, list[Allocation]]:
        with self.db.read() as conn:
            provider = provider_store.require(conn, uuid)
            return provider, allocation_store.for_provider(
                conn, provider.uuid, provider.id, provider.generation, self.catalog.resource_classes
            )

    def set_allocations(self, writes: Mapping[str, ConsumerWrite]) -> None:
        """Replace the allocations of one or more consumers atomically (a claim, a move,
        a release), checking consumer generations and capacity in one transaction."""
        rc_ids, type_ids = self._resolve(writes)

        def work(txn: WriteTxn) -> None:
            replacement = allocation_store.Replacement(txn.conn, txn.now, writes, rc_ids, type_ids)
            replacement.lock_consumers()
            replacement.check_generations()
            replacement.lock_providers()
            replacement.check_providers()
            replacement.apply()
            self._note_allocations(txn, replacement.touched, replacement.usage_deltas)

        self._write(work, retries=self.db.write_retries)

    def delete_allocations(self, consumer_uuid: str) -> None:
        """Remove every allocation of a consumer (and the consumer)."""

        def work(txn: WriteTxn) -> None:
            removed = allocation_store.delete_for_consumer(txn.conn, consumer_uuid)
            if removed is None:
                raise errors.NotFound(f"No allocations for consumer '{consumer_uuid}'")
            self._note_allocations(
                txn, {rp_id for rp_id, _ in removed.usage_deltas}, removed.usage_deltas
            )

        self._write(work, retries=self.db.write_retries)

    def _resolve(
        self, writes: Mapping[str, ConsumerWrite]
    ) -> tuple[dict[str, int], dict[str, int | None]]:
        """Resource class ids of the names used (unknown ones are reported in order, inside
        the transaction) and consumer type ids, creating new types as upstream does."""
        names = {
            rc for write in writes.values() for res in write.allocations.values() for rc in res
        }
        rc_ids, _ = self.catalog.resource_classes.ids_of(names)
        type_ids: dict[str, int | None] = {
            uuid: self.catalog.consumer_types.ensure(write.consumer_type)
            for uuid, write in writes.items()
            if write.consumer_type is not None
        }
        return rc_ids, type_ids

    @staticmethod
    def _note_allocations(
        txn: WriteTxn, touched: set[int], deltas: Mapping[tuple[int, int], int]
    ) -> None:
        txn.touch(*touched)
        merged: dict[tuple[int, int], int] = txn.notes.setdefault("usage_deltas", {})
        for key, delta in deltas.items():
            merged[key] = merged.get(key, 0) + delta

    # -- usages ---------------------------------------------------------------------------

    def get_provider_usages(self, uuid: str) -> tuple[Provider, dict[str, int]]:
        """Used amount per class the provider has inventory of."""
        with self.db.read() as conn:
            provider = provider_store.require(conn, uuid)
            return provider, allocation_store.provider_usage(
                conn, provider.id, self.catalog.resource_classes
            )

    def get_total_usages(
        self,
        project_id: str,
        user_id: str | None = None,
        *,
        by_type: bool = False,
        consumer_type: str | None = None,
    ) -> list[Usage]:
        """A project's (and user's) usage per class; with ``by_type`` (1.38) per consumer
        type with consumer counts. ``consumer_type`` "all" groups every type together,
        "unknown" keeps consumers without a type, any other name keeps that type only."""
        types = self.catalog.consumer_types
        type_filter = None
        group = by_type and consumer_type not in ("all", UNKNOWN_CONSUMER_TYPE)
        if by_type and consumer_type == UNKNOWN_CONSUMER_TYPE:
            type_filter = allocation_store.type_is(None)
        elif by_type and consumer_type not in (None, "all"):
            type_id = types.id_of(consumer_type)
            if type_id is None:
                return []
            type_filter = allocation_store.type_is(type_id)
        with self.db.read() as conn:
            sums, counts = allocation_store.total_usage(
                conn,
                project_id=project_id,
                user_id=user_id,
                type_filter=type_filter,
                by_type=group,
            )

        def label(type_id: int | None) -> str | None:
            if not by_type:
                return None
            if not group:
                return consumer_type
            return UNKNOWN_CONSUMER_TYPE if type_id is None else types.name_of(type_id)

        classes = self.catalog.resource_classes
        return [
            Usage(label(type_id), classes.name_of(rc_id), used, counts.get(type_id, 0))
            for type_id, rc_id, used in sums
        ]

    # -- reshaper -------------------------------------------------------------------------

    def reshape(
        self,
        inventories: Mapping[str, tuple[int, Mapping[str, Inventory]]],
        writes: Mapping[str, ConsumerWrite],
    ) -> None:
        """Change inventories of several providers and allocations of several consumers in
        one transaction (e.g. moving VGPU inventory and its allocations to a new child).

        ``inventories`` maps provider uuid -> (generation the caller saw, the complete new
        inventory). As upstream: the new inventories are first added next to the old ones,
        then allocations are replaced (checked against that), then the old classes that are
        no longer wanted are removed, which fails while allocations still use them.
        """
        rc_ids, type_ids = self._resolve(writes)
        inv_ids, _ = self.catalog.resource_classes.ids_of(
            {name for _, wanted in inventories.values() for name in wanted}
        )
        classes = self.catalog.resource_classes

        def work(txn: WriteTxn) -> None:
            conn = txn.conn
            replacement = allocation_store.Replacement(conn, txn.now, writes, rc_ids, type_ids)
            replacement.lock_consumers()
            found = replacement.lock_providers(also=list(inventories))
            current = provider_store.get_by_ids(conn, found.values())
            for uuid, (generation, _) in inventories.items():
                if uuid not in found:
                    raise errors.InvalidInput(
                        f"Resource provider {uuid} in inventories not found: "
                        f"No resource provider with uuid {uuid} found",
                        code=errors.RESOURCE_PROVIDER_NOT_FOUND,
                    )
                actual = current[found[uuid]].generation
                if generation != actual:
                    raise errors.GenerationConflict(
                        f"resource provider generation conflict for provider {uuid}: "
                        f"actual: {actual}, given: {generation}"
                    )
            replacement.check_generations()
            replacement.check_providers()
            # Step 1: the union of old and new inventories, so allocations can move.
            for uuid, (_, wanted) in inventories.items():
                if wanted:
                    rp_id = found[uuid]
                    have = inventory_store.for_provider(conn, rp_id, classes)
                    self._put_inventories(txn, rp_id, wanted, have, inv_ids)
                    allocation_store.bump_generations(conn, [rp_id], txn.now)
            # Step 2: the allocations, checked against the interim inventories.
            replacement.apply()
            # Step 3: exactly the new inventories.
            for uuid, (_, wanted) in inventories.items():
                rp_id = found[uuid]
                have = inventory_store.for_provider(conn, rp_id, classes)
                removing = sorted(classes.id_of(n) or 0 for n in set(have) - set(wanted))
                used = inventory_store.usage(conn, rp_id)
                in_use = [classes.name_of(i) for i in removing if used.get(i, 0) > 0]
                if in_use:
                    raise errors.InventoryInUse(
                        f"Inventory for '{', '.join(in_use)}' on resource provider '{uuid}' in use."
                    )
                inventory_store.delete(conn, rp_id, removing)
                self._put_inventories(txn, rp_id, wanted, have, inv_ids)
                allocation_store.bump_generations(conn, [rp_id], txn.now)
            # Not noted as usage deltas: inventories changed too, so listeners re-read.
            txn.touch(*replacement.touched, *found.values())

        self._write(work, retries=self.db.write_retries)

    @staticmethod
    def _put_inventories(
        txn: WriteTxn,
        rp_id: int,
        wanted: Mapping[str, Inventory],
        have: Mapping[str, Inventory],
        rc_ids: Mapping[str, int],
    ) -> None:
        for name, inventory in wanted.items():
            rc_id = rc_ids.get(name)
            if rc_id is None:
                raise errors.UnknownResourceClass(name)
            if name in have:
                inventory_store.update(txn.conn, rp_id, rc_id, inventory, txn.now)
            else:
                inventory_store.insert(txn.conn, rp_id, rc_id, inventory, txn.now)


def _require_custom(name: str, kind: str) -> None:
    """Only ``CUSTOM_*`` names may be created through the API; the HTTP layer says so first
    with upstream's wording, this guards in-process callers."""
    if not name.startswith(CUSTOM_PREFIX) or name == CUSTOM_PREFIX:
        raise errors.InvalidInput(f"The {kind} name {name!r} must start with {CUSTOM_PREFIX}.")


def _aggregate_uuid(value: str) -> str:
    """Aggregates are stored as given, like upstream; only the long spellings a uuid parser
    also accepts (braces, urn:uuid:) are shortened so they fit the 36-character column."""
    return value if len(value) <= 36 else str(uuidlib.UUID(value))
