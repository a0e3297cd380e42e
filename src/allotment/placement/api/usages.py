"""/resource_providers/{uuid}/usages and /usages (1.9)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from allotment import errors
from allotment.placement import microversions as mv
from allotment.placement.api.allocations import NOT_FOUND
from allotment.placement.api.http import PlacementRequest, newest
from allotment.placement.schemas import usage as schemas


def list_for_provider(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:usages")
    uuid = req.path_params["uuid"]
    try:
        provider, usages = req.service.get_provider_usages(uuid)
    except errors.NotFound as exc:
        raise errors.NotFound(
            f"No resource provider with uuid {uuid} found: {exc.message}"
        ) from None
    body = {"resource_provider_generation": provider.generation, "usages": usages}
    # Usage is "what is used now", so it is always as fresh as the response (as upstream).
    return req.respond(body, last_modified=newest([]))


def totals(req: PlacementRequest) -> Response:
    if not req.mv.at_least(mv.USAGES):
        raise errors.NotFound(NOT_FOUND)
    query = req.query_dict()
    req.authorize("placement:usages", {"project_id": query.get("project_id", "")})
    by_type = req.mv.at_least(mv.CONSUMER_TYPES)
    (schemas.QUERY_1_38 if by_type else schemas.QUERY_1_9).validate(query)
    found = req.service.get_total_usages(
        query["project_id"],
        query.get("user_id"),
        by_type=by_type,
        consumer_type=query.get("consumer_type"),
    )
    usages: dict[str, Any] = {}
    for usage in found:
        if by_type:
            group = usages.setdefault(str(usage.consumer_type), {})
            group[usage.resource_class] = usage.used
            group["consumer_count"] = usage.consumer_count
        else:
            usages[usage.resource_class] = usage.used
    return req.respond({"usages": usages}, last_modified=newest([]))
