"""POST /reshaper (1.30): move inventories and allocations between providers atomically."""

from __future__ import annotations

from starlette.responses import Response

from allotment import errors
from allotment.placement import microversions as mv
from allotment.placement.api.allocations import NOT_FOUND, write_errors
from allotment.placement.api.http import PlacementRequest
from allotment.placement.api.inventories import FIELDS
from allotment.placement.model import ConsumerWrite, Inventory
from allotment.placement.schemas import reshaper as schemas


def reshape(req: PlacementRequest) -> Response:
    if not req.mv.at_least(mv.RESHAPER):
        raise errors.NotFound(NOT_FOUND)
    req.check_content_type()
    req.authorize("placement:reshaper:reshape")
    data = req.json(schemas.post_schema(req.mv.minor))
    # Upstream applies no reserved-versus-total check here, unlike the inventory API.
    inventories = {
        uuid: (
            body["resource_provider_generation"],
            {
                name: Inventory(name, **{k: fields[k] for k in FIELDS if k in fields})
                for name, fields in body["inventories"].items()
            },
        )
        for uuid, body in data["inventories"].items()
    }
    writes = {
        uuid: ConsumerWrite(
            allocations={rp: entry["resources"] for rp, entry in body["allocations"].items()},
            project_id=body["project_id"],
            user_id=body["user_id"],
            generation=body["consumer_generation"],
            consumer_type=body.get("consumer_type") if req.mv.at_least(mv.CONSUMER_TYPES) else None,
        )
        for uuid, body in data["allocations"].items()
    }
    try:
        with write_errors("malformed reshaper data: ", "update conflict: "):
            req.service.reshape(inventories, writes)
    except errors.InventoryInUse as exc:
        raise errors.InventoryInUse(f"update conflict: {exc.message}") from None
    return req.respond(None, 204)
