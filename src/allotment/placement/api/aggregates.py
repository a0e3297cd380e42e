"""/resource_providers/{uuid}/aggregates (from 1.1; with the provider generation from 1.19)."""

from __future__ import annotations

from starlette.responses import Response

from allotment.placement import microversions as mv
from allotment.placement.api.http import PlacementRequest, newest, takes_json
from allotment.placement.model import Provider
from allotment.placement.schemas import aggregate as schemas


def _respond(req: PlacementRequest, provider: Provider, aggregates: list[str]) -> Response:
    body: dict[str, object] = {"aggregates": aggregates}
    if req.mv.at_least(mv.AGGREGATES_GENERATION):
        body["resource_provider_generation"] = provider.generation
    # Associations carry no useful time of their own, so (as upstream) the answer is "now".
    return req.respond(body, last_modified=newest([]))


def get_aggregates(req: PlacementRequest) -> Response:
    req.require_version(mv.PROVIDER_AGGREGATES)
    req.authorize("placement:resource_providers:aggregates:list")
    provider, aggregates = req.service.get_provider_aggregates(req.path_params["uuid"])
    return _respond(req, provider, aggregates)


@takes_json
def set_aggregates(req: PlacementRequest) -> Response:
    req.require_version(mv.PROVIDER_AGGREGATES)
    req.authorize("placement:resource_providers:aggregates:update")
    uuid = req.path_params["uuid"]
    generation: int | None = None
    with req.provider_checked_first(uuid):
        if req.mv.at_least(mv.AGGREGATES_GENERATION):
            data = req.json(schemas.PUT_1_19)
            wanted, generation = data["aggregates"], data["resource_provider_generation"]
        else:
            wanted = req.json(schemas.PUT)
        provider, stored = req.service.set_provider_aggregates(uuid, wanted, generation=generation)
    return _respond(req, provider, stored)
