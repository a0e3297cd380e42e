"""Resource providers: read, list (``resources=`` etc. answered by the capacity index),
create, rename or re-parent, delete."""

from __future__ import annotations

import uuid as uuidlib

import sqlalchemy as sa

from allotment import errors
from allotment.placement.candidates import resolve as candidate_resolve
from allotment.placement.index.sync import CapacityIndex
from allotment.placement.model import Provider, RequestGroup
from allotment.placement.objects.base import UNSET, Ledger
from allotment.placement.store import providers as provider_store
from allotment.placement.store.unit_of_work import (
    ProviderCreated,
    ProviderDeleted,
    ProvidersMoved,
    WriteTxn,
)


def get(ledger: Ledger, uuid: str) -> Provider:
    with ledger.db.read() as conn:
        return provider_store.require(conn, uuid)


def list_providers(
    ledger: Ledger,
    index: CapacityIndex,
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
        ids = index.provider_ids_having(candidate_resolve.need_of(ledger.catalog, having))
        if not ids:
            return []
    with ledger.db.read() as conn:
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


def create(
    ledger: Ledger, *, name: str, uuid: str | None = None, parent_uuid: str | None = None
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
        txn.emit(ProviderCreated(created))
        return created

    try:
        return ledger.uow.run(work)
    except sa.exc.IntegrityError:
        with ledger.db.read() as conn:
            dupes = provider_store.conflicting_fields(conn, uuid=rp_uuid, name=name)
        if not dupes:
            raise
        raise errors.DuplicateName(
            f"Conflicting resource provider {', '.join(dupes)} already exists."
        ) from None


def update(
    ledger: Ledger,
    uuid: str,
    *,
    name: str,
    parent_uuid: str | None = UNSET,
    allow_reparenting: bool,
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
                raise _save_error(uuid, "un-parenting a provider is not currently allowed.")
            parent = None
        else:
            parent = provider_store.get_by_uuid(conn, parent_uuid)
            if parent is None:
                raise errors.InvalidInput(
                    f"Unable to save resource provider {uuid}: Object action create failed "
                    "because: parent provider UUID does not exist."
                )
            if current.parent_id is not None and not allow_reparenting:
                raise _save_error(uuid, "re-parenting a provider is not currently allowed.")
            if parent.id == current.id or parent.id in provider_store.descendant_ids(conn, current):
                raise _save_error(uuid, "creating loop in the provider tree is not allowed.")
        moved = provider_store.set_name_and_parent(
            conn, current, name=name, parent=parent, now=txn.now
        )
        txn.emit(ProvidersMoved(frozenset((current.id, *moved))))
        return provider_store.require(conn, uuid)

    try:
        return ledger.uow.run(work)
    except sa.exc.IntegrityError:
        raise errors.DuplicateName(
            f"Conflicting resource provider {name} already exists."
        ) from None


def _save_error(uuid: str, reason: str) -> errors.InvalidInput:
    return errors.InvalidInput(
        f"Unable to save resource provider {uuid}: Object action update failed because: {reason}"
    )


def delete(ledger: Ledger, uuid: str) -> None:
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
        txn.emit(ProviderDeleted(current.id))

    ledger.uow.run(work)
