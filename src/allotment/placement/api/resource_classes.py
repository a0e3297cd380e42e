"""/resource_classes and /resource_classes/{name} (from 1.2)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from allotment import errors
from allotment.placement import microversions as mv
from allotment.placement.api.http import PlacementRequest, newest
from allotment.placement.model import CatalogEntry
from allotment.placement.schemas import resource_class as schemas


def resource_class_url(name: str) -> str:
    return f"/resource_classes/{name}"


def serialize(entry: CatalogEntry) -> dict[str, Any]:
    return {"name": entry.name, "links": [{"rel": "self", "href": resource_class_url(entry.name)}]}


def list_resource_classes(req: PlacementRequest) -> Response:
    req.require_version(mv.RESOURCE_CLASSES)
    req.authorize("placement:resource_classes:list")
    found = req.service.list_resource_classes()
    body = {"resource_classes": [serialize(rc) for rc in found]}
    return req.respond(body, last_modified=newest(rc.modified for rc in found))


def create_resource_class(req: PlacementRequest) -> Response:
    req.require_version(mv.RESOURCE_CLASSES)
    req.authorize("placement:resource_classes:create")
    name = schemas.validate_name(req.json())["name"]
    try:
        req.service.create_resource_class(name)
    except errors.ResourceClassExists:
        raise errors.Conflict(f"Conflicting resource class already exists: {name}") from None
    return req.respond(None, 201, headers={"location": req.url(resource_class_url(name))})


def get_resource_class(req: PlacementRequest) -> Response:
    req.require_version(mv.RESOURCE_CLASSES)
    req.authorize("placement:resource_classes:show")
    entry = req.service.get_resource_class(req.path_params["name"])
    return req.respond(serialize(entry), last_modified=entry.modified)


def update_resource_class(req: PlacementRequest) -> Response:
    req.require_version(mv.RESOURCE_CLASSES)
    if req.mv.at_least(mv.BODILESS_CLASS_PUT):
        return _ensure_resource_class(req)
    req.authorize("placement:resource_classes:update")
    name = req.path_params["name"]
    new_name = schemas.validate_name(req.json())["name"]
    try:
        entry = req.service.rename_resource_class(name, new_name)
    except errors.ResourceClassExists:
        raise errors.Conflict(f"Resource class already exists: {new_name}") from None
    except errors.StandardNameReadOnly:
        raise errors.InvalidInput(f"Cannot update standard resource class {name}") from None
    return req.respond(serialize(entry))


def _ensure_resource_class(req: PlacementRequest) -> Response:
    """PUT from 1.7: create the custom class named in the path (201), or confirm it (204)."""
    req.authorize("placement:resource_classes:update")
    name = schemas.validate_name({"name": req.path_params["name"]})["name"]
    _, created = req.service.ensure_resource_class(name)
    location = {"location": req.url(resource_class_url(name))}
    return req.respond(None, 201 if created else 204, headers=location)


def delete_resource_class(req: PlacementRequest) -> Response:
    req.require_version(mv.RESOURCE_CLASSES)
    req.authorize("placement:resource_classes:delete")
    try:
        req.service.delete_resource_class(req.path_params["name"])
    except errors.StandardNameReadOnly as exc:
        raise errors.InvalidInput(f"Error in delete resource class: {exc.message}") from None
    except errors.ResourceClassInUse as exc:
        raise errors.Conflict(f"Error in delete resource class: {exc.message}") from None
    return req.respond(None, 204)
