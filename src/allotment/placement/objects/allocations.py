"""Allocations and their consumers: read per consumer or provider, replace atomically (a
claim, a move, a release), delete."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from allotment import errors
from allotment.placement.model import Allocation, ConsumerWrite, Provider
from allotment.placement.objects.base import Ledger
from allotment.placement.store import allocations as allocation_store
from allotment.placement.store import providers as provider_store
from allotment.placement.store.unit_of_work import UsageChanged, WriteTxn


def for_consumer(ledger: Ledger, consumer_uuid: str) -> list[Allocation]:
    """A consumer's allocations (empty when it has none, or does not exist)."""
    catalog = ledger.catalog
    with ledger.db.read() as conn:
        return allocation_store.for_consumer(
            conn, consumer_uuid, catalog.resource_classes, catalog.consumer_types
        )


def for_provider(ledger: Ledger, uuid: str) -> tuple[Provider, list[Allocation]]:
    with ledger.db.read() as conn:
        provider = provider_store.require(conn, uuid)
        return provider, allocation_store.for_provider(
            conn, provider.uuid, provider.id, provider.generation, ledger.catalog.resource_classes
        )


def replace_for_consumers(ledger: Ledger, writes: Mapping[str, ConsumerWrite]) -> None:
    """Replace the allocations of one or more consumers atomically (a claim, a move,
    a release), checking consumer generations and capacity in one transaction."""
    rc_ids, type_ids = resolve(ledger, writes)

    def work(txn: WriteTxn) -> None:
        replacement = allocation_store.Replacement(txn.conn, txn.now, writes, rc_ids, type_ids)
        replacement.lock_consumers()
        replacement.check_generations()
        replacement.lock_providers()
        replacement.check_providers()
        replacement.apply()
        txn.emit(UsageChanged(frozenset(replacement.touched), dict(replacement.usage_deltas)))

    ledger.uow.run(work, retries=ledger.db.write_retries)


def delete_for_consumer(ledger: Ledger, consumer_uuid: str) -> None:
    """Remove every allocation of a consumer (and the consumer)."""

    def work(txn: WriteTxn) -> None:
        removed = allocation_store.delete_for_consumer(txn.conn, consumer_uuid)
        if removed is None:
            raise errors.NotFound(f"No allocations for consumer '{consumer_uuid}'")
        deltas = removed.usage_deltas
        txn.emit(UsageChanged(frozenset(rp_id for rp_id, _ in deltas), dict(deltas)))

    ledger.uow.run(work, retries=ledger.db.write_retries)


def delete_for_consumers(ledger: Ledger, consumer_uuids: Sequence[str]) -> int:
    """Remove every allocation of these consumers (and the consumers) in one transaction;
    consumers without allocations are skipped. Returns how many had some."""

    def work(txn: WriteTxn) -> int:
        deltas: dict[tuple[int, int], int] = defaultdict(int)
        found = 0
        for uuid in sorted(set(consumer_uuids)):  # one lock order for every writer
            removed = allocation_store.delete_for_consumer(txn.conn, uuid)
            if removed is None:
                continue
            found += 1
            for key, delta in removed.usage_deltas.items():
                deltas[key] += delta
        if deltas:
            txn.emit(UsageChanged(frozenset(rp_id for rp_id, _ in deltas), dict(deltas)))
        return found

    return ledger.uow.run(work, retries=ledger.db.write_retries)


def resolve(
    ledger: Ledger, writes: Mapping[str, ConsumerWrite]
) -> tuple[dict[str, int], dict[str, int | None]]:
    """Resource class ids of the names used (unknown ones are reported in order, inside
    the transaction) and consumer type ids, creating new types as upstream does."""
    names = {rc for write in writes.values() for res in write.allocations.values() for rc in res}
    rc_ids, _ = ledger.catalog.resource_classes.ids_of(names)
    type_ids: dict[str, int | None] = {
        uuid: ledger.catalog.consumer_types.ensure(write.consumer_type)
        for uuid, write in writes.items()
        if write.consumer_type is not None
    }
    return rc_ids, type_ids
