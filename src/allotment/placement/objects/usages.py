"""Usages: a provider's, and a project's (and user's) totals, optionally per consumer type."""

from __future__ import annotations

from allotment.placement.model import UNKNOWN_CONSUMER_TYPE, Provider, Usage
from allotment.placement.objects.base import Ledger
from allotment.placement.store import allocations as allocation_store
from allotment.placement.store import providers as provider_store


def for_provider(ledger: Ledger, uuid: str) -> tuple[Provider, dict[str, int]]:
    """Used amount per class the provider has inventory of."""
    with ledger.db.read() as conn:
        provider = provider_store.require(conn, uuid)
        return provider, allocation_store.provider_usage(
            conn, provider.id, ledger.catalog.resource_classes
        )


def totals(
    ledger: Ledger,
    project_id: str,
    user_id: str | None = None,
    *,
    by_type: bool = False,
    consumer_type: str | None = None,
) -> list[Usage]:
    """A project's (and user's) usage per class; with ``by_type`` (1.38) per consumer
    type with consumer counts. ``consumer_type`` "all" groups every type together,
    "unknown" keeps consumers without a type, any other name keeps that type only."""
    types = ledger.catalog.consumer_types
    type_filter = None
    group = by_type and consumer_type not in ("all", UNKNOWN_CONSUMER_TYPE)
    if by_type and consumer_type == UNKNOWN_CONSUMER_TYPE:
        type_filter = allocation_store.type_is(None)
    elif by_type and consumer_type not in (None, "all"):
        type_id = types.id_of(consumer_type)
        if type_id is None:
            return []
        type_filter = allocation_store.type_is(type_id)
    with ledger.db.read() as conn:
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

    classes = ledger.catalog.resource_classes
    return [
        Usage(label(type_id), classes.name_of(rc_id), used, counts.get(type_id, 0))
        for type_id, rc_id, used in sums
    ]
