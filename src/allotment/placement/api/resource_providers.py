"""/resource_providers and /resource_providers/{uuid}."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from allotment import errors
from allotment.placement import microversions as mv
from allotment.placement.api import params
from allotment.placement.api.http import PlacementRequest, newest, takes_json
from allotment.placement.model import Provider, RequestGroup
from allotment.placement.schemas import resource_provider as schemas
from allotment.placement.service import UNSET


def provider_url(uuid: str) -> str:
    return f"/resource_providers/{uuid}"


def _links(req: PlacementRequest, provider: Provider) -> list[dict[str, str]]:
    url = provider_url(provider.uuid)
    rels = ["inventories", "usages"]
    if req.mv.at_least(mv.PROVIDER_AGGREGATES):
        rels.append("aggregates")
    if req.mv.at_least(mv.TRAITS):
        rels.append("traits")
    if req.mv.at_least(mv.ALLOCATIONS_LINK):
        rels.append("allocations")
    return [{"rel": "self", "href": url}] + [{"rel": r, "href": f"{url}/{r}"} for r in rels]


def serialize(req: PlacementRequest, provider: Provider) -> dict[str, Any]:
    data: dict[str, Any] = {
        "uuid": provider.uuid,
        "name": provider.name,
        "generation": provider.generation,
        "links": _links(req, provider),
    }
    if req.mv.at_least(mv.NESTED_PROVIDERS):
        data["parent_provider_uuid"] = provider.parent_uuid
        data["root_provider_uuid"] = provider.root_uuid
    return data


@takes_json
def create_resource_provider(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:create")
    data = req.json(schemas.POST_1_14 if req.mv.at_least(mv.NESTED_PROVIDERS) else schemas.POST)
    provider = req.service.create_provider(
        name=data["name"], uuid=data.get("uuid"), parent_uuid=data.get("parent_provider_uuid")
    )
    location = {"location": req.url(provider_url(provider.uuid))}
    if req.mv.at_least(mv.CREATE_RETURNS_PROVIDER):
        return req.respond(
            serialize(req, provider), last_modified=provider.modified, headers=location
        )
    return req.respond(None, 201, headers=location)


def get_resource_provider(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:show")
    provider = req.service.get_provider(req.path_params["uuid"])
    return req.respond(serialize(req, provider), last_modified=provider.modified)


def list_resource_providers(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:list")
    query = req.query_dict()
    schemas.list_query(req.mv.minor).validate(query)
    having = None
    member_of = params.values_of(req.query, "member_of")
    required = params.values_of(req.query, "required")
    if member_of or required or "resources" in query:
        aggregates, not_aggregates = params.member_of_param(member_of, "", req.mv)
        traits, not_traits = (
            params.traits_param(required, req.mv) if required else ((), frozenset())
        )
        having = RequestGroup(
            resources=params.parse_resources(query["resources"]) if "resources" in query else {},
            required_traits=traits,
            forbidden_traits=not_traits,
            member_of=aggregates,
            forbidden_aggregates=not_aggregates,
        )
    try:
        found = req.service.list_providers(
            name=query.get("name"),
            uuid=query.get("uuid"),
            in_tree=query.get("in_tree"),
            having=having,
        )
    except errors.UnknownResourceClass as exc:
        raise errors.InvalidInput(
            f"Invalid resource class in resources parameter: {exc.message}"
        ) from None
    except errors.UnknownTrait as exc:
        raise errors.InvalidInput(
            f'Invalid trait(s) in "required" parameter: {exc.message}'
        ) from None
    body = {"resource_providers": [serialize(req, p) for p in found]}
    return req.respond(body, last_modified=newest(p.modified for p in found))


@takes_json
def update_resource_provider(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:update")
    uuid = req.path_params["uuid"]
    req.service.get_provider(uuid)  # 404 before body errors, as upstream
    data = req.json(schemas.PUT_1_14 if req.mv.at_least(mv.NESTED_PROVIDERS) else schemas.PUT)
    provider = req.service.update_provider(
        uuid,
        name=data["name"],
        parent_uuid=data.get("parent_provider_uuid", UNSET),
        allow_reparenting=req.mv.at_least(mv.REPARENTING),
    )
    return req.respond(serialize(req, provider), last_modified=provider.modified)


def delete_resource_provider(req: PlacementRequest) -> Response:
    req.authorize("placement:resource_providers:delete")
    req.service.delete_provider(req.path_params["uuid"])
    return req.respond(None, 204)
