"""Aggregates: a provider's aggregates (read, replace) and an aggregate's members."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import replace

import sqlalchemy as sa

from allotment.db.database import RetryTransaction
from allotment.placement.index.sync import CapacityIndex
from allotment.placement.model import Provider
from allotment.placement.objects.base import Ledger, locked_provider
from allotment.placement.store import aggregates as aggregate_store
from allotment.placement.store import providers as provider_store
from allotment.placement.store.unit_of_work import AggregatesSet, WriteTxn


def get_provider_aggregates(ledger: Ledger, uuid: str) -> tuple[Provider, list[str]]:
    """The provider and the uuids of its aggregates (in the order they were first seen)."""
    with ledger.db.read() as conn:
        provider = provider_store.require(conn, uuid)
        return provider, list(aggregate_store.for_provider(conn, provider.id).values())


def set_provider_aggregates(
    ledger: Ledger, uuid: str, aggregates: Sequence[str], *, generation: int | None
) -> tuple[Provider, list[str]]:
    """Replace the provider's aggregates; aggregates never seen before are created.

    With ``generation`` (microversion 1.19 on) the provider generation is checked and
    always moves on, as upstream; without it (the older API) it is neither.
    Returns the provider as it is now and the aggregates as stored.
    """
    wanted = list(dict.fromkeys(_aggregate_uuid(u) for u in aggregates))

    def work(txn: WriteTxn) -> tuple[Provider, list[str]]:
        conn = txn.conn
        provider = locked_provider(txn, uuid, generation)
        current = aggregate_store.for_provider(conn, provider.id)
        have = set(current.values())
        keep = set(wanted)
        try:
            new_ids = aggregate_store.ensure(conn, [u for u in wanted if u not in have], txn.now)
        except sa.exc.IntegrityError:  # another request created one of them just now
            raise RetryTransaction from None
        aggregate_store.dissociate(
            conn, provider.id, [i for i, u in current.items() if u not in keep]
        )
        aggregate_store.associate(conn, provider.id, new_ids.values(), txn.now)
        if generation is None:
            if new_ids or have - keep:
                txn.emit(AggregatesSet(provider.id))
            return provider, wanted
        generation_now = provider_store.bump_generation(conn, provider, txn.now)
        txn.emit(AggregatesSet(provider.id))
        return replace(provider, generation=generation_now, updated_at=txn.now), wanted

    return ledger.uow.run(work, retries=3)


def members(index: CapacityIndex, aggregate_uuid: str) -> set[str]:
    """Uuids of the providers in an aggregate. Served from the capacity index."""
    return index.aggregate_members(aggregate_uuid)


def _aggregate_uuid(value: str) -> str:
    """Aggregates are stored as given, like upstream; only the long spellings a uuid parser
    also accepts (braces, urn:uuid:) are shortened so they fit the 36-character column."""
    return value if len(value) <= 36 else str(uuidlib.UUID(value))
