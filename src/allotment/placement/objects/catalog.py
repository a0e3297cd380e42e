"""Resource classes and traits: the standard ones (read-only) and custom ones (``CUSTOM_*``,
created, renamed and deleted through the API)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment import errors
from allotment.placement.model import CatalogEntry, Provider
from allotment.placement.objects.base import Ledger, locked_provider, require_custom
from allotment.placement.store import providers as provider_store
from allotment.placement.store import resource_classes as rc_store
from allotment.placement.store import traits as trait_store
from allotment.placement.store.unit_of_work import CatalogChanged, TraitsSet, WriteTxn


class _NameStore(Protocol):
    """What deleting a custom name needs of its store module (resource classes, traits)."""

    def get(self, conn: Connection, name: str, *, lock: bool = False) -> CatalogEntry | None: ...

    def in_use(self, conn: Connection, entry_id: int, /) -> bool: ...

    def delete(self, conn: Connection, entry_id: int, /) -> None: ...


def _delete_custom(
    ledger: Ledger,
    store: _NameStore,
    name: str,
    *,
    kind: str,
    not_found: Callable[[str], Exception],
    in_use: Callable[[str], Exception],
) -> None:
    """Delete the custom ``kind`` ``name`` when nothing uses it; standard names are
    read-only."""

    def work(txn: WriteTxn) -> None:
        current = store.get(txn.conn, name, lock=True)
        if current is None:
            raise not_found(name)
        if not current.is_custom:
            raise errors.StandardNameReadOnly(f"Cannot delete standard {kind} {name}.")
        if store.in_use(txn.conn, current.id):
            raise in_use(name)
        store.delete(txn.conn, current.id)
        txn.emit(CatalogChanged(name))

    ledger.uow.run(work)


# -- resource classes ---------------------------------------------------------------------


def list_resource_classes(ledger: Ledger) -> list[CatalogEntry]:
    """Every resource class: the standard ones in os-resource-classes order, then custom."""
    with ledger.db.read() as conn:
        return rc_store.all_classes(conn)


def get_resource_class(ledger: Ledger, name: str) -> CatalogEntry:
    with ledger.db.read() as conn:
        found = rc_store.get(conn, name)
    if found is None:
        raise errors.ResourceClassNotFound(name)
    return found


def create_resource_class(ledger: Ledger, name: str) -> CatalogEntry:
    """Create the custom class ``name``; ResourceClassExists when it is taken."""
    require_custom(name, "resource class")

    def work(txn: WriteTxn) -> CatalogEntry:
        if rc_store.get(txn.conn, name) is not None:
            raise errors.ResourceClassExists(name)
        txn.emit(CatalogChanged(name))
        return rc_store.create(txn.conn, name, txn.now)

    try:
        return ledger.uow.run(work)
    except sa.exc.IntegrityError:  # created by a concurrent request
        raise errors.ResourceClassExists(name) from None


def ensure_resource_class(ledger: Ledger, name: str) -> tuple[CatalogEntry, bool]:
    """The custom class ``name``, created when missing; True when this call created it."""
    require_custom(name, "resource class")
    with ledger.db.read() as conn:
        found = rc_store.get(conn, name)
    if found is not None:
        return found, False
    try:
        return create_resource_class(ledger, name), True
    except errors.ResourceClassExists:
        return get_resource_class(ledger, name), False


def rename_resource_class(ledger: Ledger, name: str, new_name: str) -> CatalogEntry:
    """Rename a custom class; its inventories and allocations follow (they refer to its id)."""
    require_custom(new_name, "resource class")

    def work(txn: WriteTxn) -> CatalogEntry:
        current = rc_store.get(txn.conn, name, lock=True)
        if current is None:
            raise errors.ResourceClassNotFound(name)
        if not current.is_custom:
            raise errors.StandardNameReadOnly(f"Cannot update standard resource class {name}.")
        if new_name != name and rc_store.get(txn.conn, new_name) is not None:
            raise errors.ResourceClassExists(new_name)
        txn.emit(CatalogChanged(name))
        return rc_store.rename(txn.conn, current, new_name, txn.now)

    try:
        return ledger.uow.run(work)
    except sa.exc.IntegrityError:
        raise errors.ResourceClassExists(new_name) from None


def delete_resource_class(ledger: Ledger, name: str) -> None:
    """Delete a custom class no provider has inventory of."""
    _delete_custom(
        ledger,
        rc_store,
        name,
        kind="resource class",
        not_found=errors.ResourceClassNotFound,
        in_use=errors.ResourceClassInUse,
    )


# -- traits -------------------------------------------------------------------------------


def list_traits(
    ledger: Ledger,
    *,
    names: Collection[str] | None = None,
    prefix: str | None = None,
    associated: bool | None = None,
) -> list[CatalogEntry]:
    """Traits in id order, filtered by exact names, a literal name prefix and/or whether
    any provider has them. A few hundred rows: filtering them here beats per-filter SQL."""
    with ledger.db.read() as conn:
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


def get_trait(ledger: Ledger, name: str) -> CatalogEntry:
    with ledger.db.read() as conn:
        found = trait_store.get(conn, name)
    if found is None:
        raise errors.TraitNotFound(name)
    return found


def ensure_trait(ledger: Ledger, name: str) -> tuple[CatalogEntry, bool]:
    """The custom trait ``name``, created when missing; True when this call created it."""
    require_custom(name, "trait")
    with ledger.db.read() as conn:
        found = trait_store.get(conn, name)
    if found is not None:
        return found, False

    def work(txn: WriteTxn) -> tuple[CatalogEntry, bool]:
        existing = trait_store.get(txn.conn, name)
        if existing is not None:
            return existing, False
        txn.emit(CatalogChanged(name))
        return trait_store.create(txn.conn, name, txn.now), True

    try:
        return ledger.uow.run(work)
    except sa.exc.IntegrityError:  # created by a concurrent request
        return get_trait(ledger, name), False


def delete_trait(ledger: Ledger, name: str) -> None:
    """Delete a custom trait no provider has."""
    _delete_custom(
        ledger,
        trait_store,
        name,
        kind="trait",
        not_found=errors.TraitNotFound,
        in_use=errors.TraitInUse,
    )


def get_provider_traits(ledger: Ledger, uuid: str) -> tuple[Provider, list[CatalogEntry]]:
    with ledger.db.read() as conn:
        provider = provider_store.require(conn, uuid)
        return provider, trait_store.for_provider(conn, provider.id)


def set_provider_traits(
    ledger: Ledger, uuid: str, names: Sequence[str], *, generation: int | None
) -> tuple[Provider, list[CatalogEntry]]:
    """Replace the provider's traits with ``names``.

    ``generation`` is the provider generation the caller last saw (None: whatever it is
    now). The generation moves only when the set of traits actually changes, as upstream.
    Returns the provider as it is now and its traits in id order.
    """
    wanted = list(dict.fromkeys(names))

    def work(txn: WriteTxn) -> tuple[Provider, list[CatalogEntry]]:
        conn = txn.conn
        provider = locked_provider(txn, uuid, generation)
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
        txn.emit(TraitsSet(provider.id))
        return replace(provider, generation=generation_now, updated_at=txn.now), found

    return ledger.uow.run(work)
