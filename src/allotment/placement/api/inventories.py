"""/resource_providers/{uuid}/inventories[/{resource_class}]."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from allotment import errors
from allotment.placement import microversions as mv
from allotment.placement.api.http import PlacementRequest, newest, takes_json
from allotment.placement.api.resource_providers import provider_url
from allotment.placement.model import Inventory, Provider
from allotment.placement.schemas import inventory as schemas

FIELDS = ("total", "reserved", "min_unit", "max_unit", "step_size", "allocation_ratio")


def _serialize(inventory: Inventory) -> dict[str, Any]:
    return {field: getattr(inventory, field) for field in FIELDS}


def _collection(req: PlacementRequest, provider: Provider, found: dict[str, Inventory]) -> Response:
    body = {
        "resource_provider_generation": provider.generation,
        "inventories": {name: _serialize(inv) for name, inv in found.items()},
    }
    return req.respond(body, last_modified=newest(inv.modified for inv in found.values()))


def _single(
    req: PlacementRequest, provider: Provider, inventory: Inventory, status: int = 200, **kw: Any
) -> Response:
    body = _serialize(inventory)
    if provider.generation:
        body["resource_provider_generation"] = provider.generation
    return req.respond(body, status, last_modified=newest([inventory.modified]), **kw)


def _inventory(
    req: PlacementRequest, provider_uuid: str, name: str, data: dict[str, Any]
) -> Inventory:
    """Build an inventory from a body, checking capacity as the microversion demands."""
    fields = {k: data[k] for k in FIELDS if k in data}
    inventory = Inventory(name, **fields)
    # From 1.26 reserved may equal total (a provider whose whole capacity is set aside).
    if inventory.capacity < 0 or (
        inventory.capacity == 0 and not req.mv.at_least(mv.EMPTY_INVENTORY)
    ):
        relation = (
            "greater than" if req.mv.at_least(mv.EMPTY_INVENTORY) else "greater than or equal to"
        )
        raise _CapacityError(
            f"Invalid inventory for '{name}' on resource provider '{provider_uuid}'. "
            f"The reserved value is {relation} total."
        )
    return inventory


class _CapacityError(errors.InvalidInput):
    pass


def get_inventories(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:inventories:list")
    provider, found = req.service.get_inventories(req.path_params["uuid"])
    return _collection(req, provider, found)


def get_inventory(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:inventories:show")
    uuid, name = req.path_params["uuid"], req.path_params["resource_class"]
    provider, found = req.service.get_inventories(uuid)
    if name not in found:
        raise errors.NotFound(f"No inventory of class {name} for {uuid}")
    return _single(req, provider, found[name])


@takes_json
def set_inventories(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:inventories:update")
    uuid = req.path_params["uuid"]
    with req.provider_checked_first(uuid):
        data = req.json(schemas.PUT_ALL)
        try:
            wanted = {n: _inventory(req, uuid, n, d) for n, d in data["inventories"].items()}
            provider, found = req.service.change_inventories(
                uuid, generation=data["resource_provider_generation"], put=wanted, replace_all=True
            )
        except errors.UnknownResourceClass as exc:
            raise errors.InvalidInput(
                f"Unknown resource class in inventory for resource provider {uuid}: {exc.message}"
            ) from None
        except _CapacityError as exc:
            raise errors.InvalidInput(
                f"Unable to update inventory for resource provider {uuid}: {exc.message}"
            ) from None
        except errors.InventoryInUse as exc:
            raise errors.InventoryInUse(f"update conflict: {exc.message}") from None
    return _collection(req, provider, found)


@takes_json
def create_inventory(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:inventories:create")
    uuid = req.path_params["uuid"]
    req.service.get_provider(uuid)
    data = req.json(schemas.POST)
    name = data["resource_class"]
    try:
        inventory = _inventory(req, uuid, name, data)
        provider, found = req.service.change_inventories(
            uuid, generation=None, put={name: inventory}, create_only=True
        )
    except (errors.UnknownResourceClass, _CapacityError) as exc:
        raise errors.InvalidInput(
            f"Unable to create inventory for resource provider {uuid}: {exc.message}"
        ) from None
    location = {"location": req.url(f"{provider_url(uuid)}/inventories/{name}")}
    return _single(req, provider, found[name], 201, headers=location)


@takes_json
def update_inventory(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:inventories:update")
    uuid, name = req.path_params["uuid"], req.path_params["resource_class"]
    req.service.get_provider(uuid)
    data = req.json(schemas.PUT_ONE)
    try:
        inventory = _inventory(req, uuid, name, data)
        provider, found = req.service.change_inventories(
            uuid,
            generation=data["resource_provider_generation"],
            put={name: inventory},
            update_only=True,
        )
    except (errors.InventoryNotFound, errors.UnknownResourceClass) as exc:
        raise errors.InvalidInput(
            f"No inventory record with resource class for resource provider {uuid}: "
            f"No inventory of class {name} found."
        ) from exc
    except _CapacityError as exc:
        raise errors.InvalidInput(
            f"Unable to update inventory for resource provider {uuid}: {exc.message}"
        ) from None
    return _single(req, provider, found[name])


def delete_inventory(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:inventories:delete")
    uuid, name = req.path_params["uuid"], req.path_params["resource_class"]
    req.service.get_provider(uuid)
    try:
        req.service.change_inventories(uuid, generation=None, delete={name})
    except (errors.InventoryNotFound, errors.UnknownResourceClass):
        raise errors.NotFound(
            f"No inventory of class {name} found for delete: No inventory of class {name} "
            "found for delete"
        ) from None
    except errors.InventoryInUse as exc:
        # Upstream reports this one with the concurrent-update code; clients match on it.
        raise errors.ConcurrentUpdate(
            f"Unable to delete inventory of class {name}: {exc.message}"
        ) from None
    return req.respond(None, 204)


def delete_inventories(req: PlacementRequest) -> Response:
    if not req.mv.at_least(mv.DELETE_ALL_INVENTORIES):
        raise errors.MethodNotAllowed(
            "The method specified is not allowed for this resource.", ["GET", "PUT"]
        )
    req.authorize("placement:resource_providers:inventories:delete")
    uuid = req.path_params["uuid"]
    req.service.get_provider(uuid)
    req.service.change_inventories(uuid, generation=None, put={}, replace_all=True)
    return req.respond(None, 204)
