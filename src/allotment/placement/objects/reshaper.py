"""The reshaper: inventories of several providers and allocations of several consumers
changed in one transaction (e.g. moving VGPU inventory and its allocations to a new child)."""

from __future__ import annotations

from collections.abc import Mapping

from allotment import errors
from allotment.placement.model import ConsumerWrite, Inventory
from allotment.placement.objects import allocations, inventories
from allotment.placement.objects.base import Ledger, refuse_removing_used
from allotment.placement.store import allocations as allocation_store
from allotment.placement.store import inventories as inventory_store
from allotment.placement.store import providers as provider_store
from allotment.placement.store.unit_of_work import ProvidersReshaped, WriteTxn


def reshape(
    ledger: Ledger,
    wanted_inventories: Mapping[str, tuple[int, Mapping[str, Inventory]]],
    writes: Mapping[str, ConsumerWrite],
) -> None:
    """``wanted_inventories`` maps provider uuid -> (generation the caller saw, the complete
    new inventory). As upstream: the new inventories are first added next to the old ones,
    then allocations are replaced (checked against that), then the old classes that are no
    longer wanted are removed, which fails while allocations still use them.
    """
    rc_ids, type_ids = allocations.resolve(ledger, writes)
    classes = ledger.catalog.resource_classes
    inv_ids, _ = classes.ids_of(
        {name for _, wanted in wanted_inventories.values() for name in wanted}
    )

    def work(txn: WriteTxn) -> None:
        conn = txn.conn
        replacement = allocation_store.Replacement(conn, txn.now, writes, rc_ids, type_ids)
        replacement.lock_consumers()
        found = replacement.lock_providers(also=list(wanted_inventories))
        current = provider_store.get_by_ids(conn, found.values())
        for uuid, (generation, _) in wanted_inventories.items():
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
        for uuid, (_, wanted) in wanted_inventories.items():
            if wanted:
                rp_id = found[uuid]
                have = inventory_store.for_provider(conn, rp_id, classes)
                inventories.put_all(txn, rp_id, wanted, have, inv_ids)
                allocation_store.bump_generations(conn, [rp_id], txn.now)
        # Step 2: the allocations, checked against the interim inventories.
        replacement.apply()
        # Step 3: exactly the new inventories.
        for uuid, (_, wanted) in wanted_inventories.items():
            rp_id = found[uuid]
            have = inventory_store.for_provider(conn, rp_id, classes)
            removing = sorted((classes.id_of(n) or 0, n) for n in set(have) - set(wanted))
            refuse_removing_used(uuid, removing, inventory_store.usage(conn, rp_id))
            inventory_store.delete(conn, rp_id, [rc_id for rc_id, _ in removing])
            inventories.put_all(txn, rp_id, wanted, have, inv_ids)
            allocation_store.bump_generations(conn, [rp_id], txn.now)
        # Not usage deltas: inventories changed too, so listeners re-read.
        txn.emit(ProvidersReshaped(frozenset((*replacement.touched, *found.values()))))

    ledger.uow.run(work, retries=ledger.db.write_retries)
