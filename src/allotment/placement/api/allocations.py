"""/allocations/{consumer_uuid}, POST /allocations (1.13) and
/resource_providers/{uuid}/allocations."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from starlette.responses import Response

from allotment import errors
from allotment.placement import microversions as mv
from allotment.placement.api.http import PlacementRequest, newest, takes_json
from allotment.placement.model import (
    INCOMPLETE_CONSUMER_ID,
    UNKNOWN_CONSUMER_TYPE,
    Allocation,
    ConsumerWrite,
)
from allotment.placement.schemas import allocation as schemas
from allotment.placement.schemas import is_uuid_like

# A route that exists only from a later microversion: upstream's bare 404 (the
# explanation "The resource could not be found." and no detail).
NOT_FOUND = ""


def _for_consumer(req: PlacementRequest, found: list[Allocation]) -> dict[str, Any]:
    by_provider: dict[str, dict[str, Any]] = {}
    for alloc in found:
        entry = by_provider.setdefault(
            alloc.provider_uuid, {"generation": alloc.provider_generation, "resources": {}}
        )
        entry["resources"][alloc.resource_class] = alloc.used
    body: dict[str, Any] = {"allocations": by_provider}
    if found and req.mv.at_least(mv.DICT_ALLOCATIONS):
        consumer = found[0].consumer
        body["project_id"] = consumer.project_id
        body["user_id"] = consumer.user_id
        if req.mv.at_least(mv.CONSUMER_GENERATION):
            body["consumer_generation"] = consumer.generation
        if req.mv.at_least(mv.CONSUMER_TYPES):
            body["consumer_type"] = consumer.consumer_type or UNKNOWN_CONSUMER_TYPE
    return body


def _for_provider(req: PlacementRequest, found: list[Allocation]) -> dict[str, Any]:
    by_consumer: dict[str, dict[str, Any]] = {}
    for alloc in found:
        entry = by_consumer.setdefault(alloc.consumer.uuid, {"resources": {}})
        entry["resources"][alloc.resource_class] = alloc.used
        if req.mv.at_least(mv.CONSUMER_GENERATION):
            entry["consumer_generation"] = alloc.consumer.generation
    return {"allocations": by_consumer}


def list_for_consumer(req: PlacementRequest) -> Response:
    req.authorize("placement:allocations:list")
    # Any string is a consumer id here: an unknown one simply has no allocations.
    found = req.service.get_consumer_allocations(req.path_params["consumer_uuid"])
    return req.respond(_for_consumer(req, found), last_modified=newest(a.modified for a in found))


def list_for_provider(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:allocations:list")
    uuid = req.path_params["uuid"]
    try:
        provider, found = req.service.get_provider_allocations(uuid)
    except errors.NotFound as exc:
        raise errors.NotFound(f"Resource provider '{uuid}' not found: {exc.message}") from None
    body = _for_provider(req, found)
    body["resource_provider_generation"] = provider.generation
    return req.respond(body, last_modified=newest(a.modified for a in found))


def _write(req: PlacementRequest, data: Mapping[str, Any], allocations: Any) -> ConsumerWrite:
    """One consumer's part of a PUT or POST body as a service-level write."""
    project_id, user_id = data.get("project_id"), data.get("user_id")
    if project_id is None:  # before 1.8 allocations had no owner: upstream's placeholder
        project_id = user_id = INCOMPLETE_CONSUMER_ID
    return ConsumerWrite(
        allocations=allocations,
        project_id=project_id,
        user_id=user_id or INCOMPLETE_CONSUMER_ID,
        generation=data.get("consumer_generation"),
        check_generation=req.mv.at_least(mv.CONSUMER_GENERATION),
        consumer_type=data.get("consumer_type") if req.mv.at_least(mv.CONSUMER_TYPES) else None,
    )


def _by_provider(data: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    return {rp: entry["resources"] for rp, entry in data["allocations"].items()}


@contextmanager
def write_errors(not_found_prefix: str, conflict_prefix: str) -> Iterator[None]:
    """Upstream's wording around the errors of an allocation write."""
    try:
        yield
    except errors.UnknownResourceClass as exc:
        raise errors.InvalidInput(f"{not_found_prefix}{exc.message}") from None
    except errors.InvalidAllocation as exc:
        raise errors.InvalidAllocation(f"Unable to allocate inventory: {exc.message}") from None
    except errors.GenerationConflict:
        raise
    except errors.ConcurrentUpdate as exc:
        raise errors.ConcurrentUpdate(f"{conflict_prefix}{exc.message}") from None


_CHANGED = "Inventory and/or allocations changed while attempting to allocate: "


@takes_json
def set_for_consumer(req: PlacementRequest) -> Response:
    req.authorize("placement:allocations:update")
    raw = req.path_params["consumer_uuid"]
    if not is_uuid_like(raw):
        raise errors.InvalidInput(f"Malformed consumer_uuid: {raw}")
    consumer_uuid = str(uuidlib.UUID(raw))
    data = req.json(schemas.put_schema(req.mv.minor))
    if req.mv.at_least(mv.DICT_ALLOCATIONS):
        allocations = _by_provider(data)
    else:
        allocations = {
            item["resource_provider"]["uuid"]: item["resources"] for item in data["allocations"]
        }
    write = _write(req, data, allocations)
    with write_errors(f"Unable to allocate inventory for consumer {consumer_uuid}: ", _CHANGED):
        req.service.set_allocations({consumer_uuid: write})
    return req.respond(None, 204)


def set_for_consumers(req: PlacementRequest) -> Response:
    if not req.mv.at_least(mv.POST_ALLOCATIONS):
        raise errors.NotFound(NOT_FOUND)
    req.check_content_type()
    req.authorize("placement:allocations:manage")
    data = req.json(schemas.post_schema(req.mv.minor))
    writes = {uuid: _write(req, body, _by_provider(body)) for uuid, body in data.items()}
    with write_errors("Unable to allocate inventory ", _CHANGED):
        req.service.set_allocations(writes)
    return req.respond(None, 204)


def delete_for_consumer(req: PlacementRequest) -> Response:
    req.authorize("placement:allocations:delete")
    req.service.delete_allocations(req.path_params["consumer_uuid"])
    return req.respond(None, 204)
