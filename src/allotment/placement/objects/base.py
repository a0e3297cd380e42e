"""What the per-resource modules share: the ledger they work on and the preambles every
write repeats (lock the provider and compare its generation, refuse removing inventory in
use, require a custom name)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from allotment import errors
from allotment.db.database import Database
from allotment.placement.model import CUSTOM_PREFIX, Provider
from allotment.placement.store import providers as provider_store
from allotment.placement.store.catalog import Catalog
from allotment.placement.store.unit_of_work import UnitOfWork, WriteTxn

UNSET: Any = object()  # "the caller did not send this field" (differs from an explicit null)

GENERATION_CHANGED = (
    "Resource provider's generation already changed. Please update the generation and try again."
)


@dataclass(frozen=True)
class Ledger:
    """The database, the in-memory catalog and the unit of work writes run in."""

    db: Database
    catalog: Catalog
    uow: UnitOfWork


def locked_provider(
    txn: WriteTxn, uuid: str, generation: int | None, *, conflict: str = GENERATION_CHANGED
) -> Provider:
    """The provider ``uuid``, locked for the rest of the transaction; ConcurrentUpdate
    (``conflict``) when ``generation`` is given and is not the provider's now."""
    provider = provider_store.require(txn.conn, uuid)
    provider_store.lock(txn.conn, [provider.id])
    if generation is not None and generation != provider.generation:
        raise errors.ConcurrentUpdate(conflict)
    return provider


def refuse_removing_used(
    provider_uuid: str, removing: Sequence[tuple[int, str]], used: Mapping[int, int]
) -> None:
    """InventoryInUse when a class about to be removed (class id, name, in id order) still
    has allocations on the provider."""
    in_use = [name for rc_id, name in removing if used.get(rc_id, 0) > 0]
    if in_use:
        raise errors.InventoryInUse(
            f"Inventory for '{', '.join(in_use)}' on resource provider '{provider_uuid}' in use."
        )


def require_custom(name: str, kind: str) -> None:
    """Only ``CUSTOM_*`` names may be created through the API; the HTTP layer says so first
    with upstream's wording, this guards in-process callers."""
    if not name.startswith(CUSTOM_PREFIX) or name == CUSTOM_PREFIX:
        raise errors.InvalidInput(f"The {kind} name {name!r} must start with {CUSTOM_PREFIX}.")
