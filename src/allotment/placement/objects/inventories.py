"""Inventories of one provider: read, and add / update / delete in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from allotment import errors
from allotment.placement.model import CUSTOM_PREFIX, Inventory, Provider
from allotment.placement.objects.base import Ledger, locked_provider, refuse_removing_used
from allotment.placement.store import inventories as inventory_store
from allotment.placement.store import providers as provider_store
from allotment.placement.store import resource_classes as rc_store
from allotment.placement.store.unit_of_work import InventoriesSet, WriteTxn

LOG = logging.getLogger(__name__)


def get(ledger: Ledger, uuid: str) -> tuple[Provider, dict[str, Inventory]]:
    with ledger.db.read() as conn:
        provider = provider_store.get_by_uuid(conn, uuid)
        if provider is None:
            raise errors.NotFound(
                f"No resource provider with uuid {uuid} found : Resource could not be found."
            )
        return provider, inventory_store.for_provider(
            conn, provider.id, ledger.catalog.resource_classes
        )


def change(
    ledger: Ledger,
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
    classes = ledger.catalog.resource_classes
    rc_ids, unknown = classes.ids_of([*put, *delete])
    if unknown:
        raise errors.UnknownResourceClass(sorted(unknown)[0])

    def work(txn: WriteTxn) -> tuple[Provider, dict[str, Inventory]]:
        conn = txn.conn
        provider = locked_provider(
            txn, uuid, generation, conflict="resource provider generation conflict"
        )
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
        refuse_removing_used(provider.uuid, removing_ids, used)
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
        txn.emit(InventoriesSet(provider, noted if len(noted) == len(after) else None, used))
        return replace(provider, generation=generation_now, updated_at=txn.now), after

    return ledger.uow.run(work)


def put_all(
    txn: WriteTxn,
    rp_id: int,
    wanted: Mapping[str, Inventory],
    have: Mapping[str, Inventory],
    rc_ids: Mapping[str, int],
) -> None:
    """Write ``wanted`` over ``have`` (inserting new classes, updating the others)."""
    for name, inventory in wanted.items():
        rc_id = rc_ids.get(name)
        if rc_id is None:
            raise errors.UnknownResourceClass(name)
        if name in have:
            inventory_store.update(txn.conn, rp_id, rc_id, inventory, txn.now)
        else:
            inventory_store.insert(txn.conn, rp_id, rc_id, inventory, txn.now)
