"""/traits[/{name}] and /resource_providers/{uuid}/traits (from 1.6)."""

from __future__ import annotations

from typing import TypedDict

from starlette.responses import Response

from allotment import errors
from allotment.placement import microversions as mv
from allotment.placement.api.http import PlacementRequest, newest
from allotment.placement.model import CatalogEntry, Provider
from allotment.placement.schemas import trait as schemas

INVALID_NAME = (
    "The trait is invalid. A valid trait must be no longer than 255 characters, start with the "
    'prefix "CUSTOM_" and use following characters: "A"-"Z", "0"-"9" and "_"'
)


def trait_url(name: str) -> str:
    return f"/traits/{name}"


def _names(found: list[CatalogEntry]) -> list[str]:
    return [t.name for t in found]


class _ListFilters(TypedDict, total=False):
    names: list[str]
    prefix: str
    associated: bool


def _list_filters(req: PlacementRequest) -> _ListFilters:
    """``name=in:A,B`` / ``name=startswith:PREFIX`` and ``associated=true|false``."""
    query = schemas.LIST_QUERY.validate(req.query_dict())
    filters: _ListFilters = {}
    if "name" in query:
        op, sep, value = query["name"].partition(":")
        if not sep:
            raise errors.InvalidInput(
                "Badly formatted name parameter. Expected name query string parameter in "
                f'form: ?name=[in|startswith]:[name1,name2|prefix]. Got: "{query["name"]}"'
            )
        # Any other operator filters nothing, as upstream.
        if op == "in":
            filters["names"] = value.split(",")
        elif op == "startswith":
            filters["prefix"] = value
    if "associated" in query:
        associated = query["associated"].lower()
        if associated not in ("true", "false"):
            raise errors.InvalidInput(
                'The query parameter "associated" only accepts "true" or "false"'
            )
        filters["associated"] = associated == "true"
    return filters


def list_traits(req: PlacementRequest) -> Response:
    req.require_version(mv.TRAITS)
    req.authorize("placement:traits:list")
    found = req.service.list_traits(**_list_filters(req))
    return req.respond({"traits": _names(found)}, last_modified=newest(t.modified for t in found))


def get_trait(req: PlacementRequest) -> Response:
    req.require_version(mv.TRAITS)
    req.authorize("placement:traits:show")
    entry = req.service.get_trait(req.path_params["name"])
    return req.respond(None, 204, last_modified=entry.created_at)


def put_trait(req: PlacementRequest) -> Response:
    """Create the custom trait named in the path (201), or confirm it exists (204)."""
    req.require_version(mv.TRAITS)
    req.authorize("placement:traits:update")
    name = req.path_params["name"]
    if not schemas.is_custom_name(name):
        raise errors.InvalidInput(INVALID_NAME)
    entry, created = req.service.ensure_trait(name)
    return req.respond(
        None,
        201 if created else 204,
        last_modified=entry.created_at,
        headers={"location": req.url(trait_url(name))},
    )


def delete_trait(req: PlacementRequest) -> Response:
    req.require_version(mv.TRAITS)
    req.authorize("placement:traits:delete")
    req.service.delete_trait(req.path_params["name"])
    return req.respond(None, 204)


def _provider_traits(
    req: PlacementRequest, provider: Provider, found: list[CatalogEntry]
) -> Response:
    body = {"traits": _names(found), "resource_provider_generation": provider.generation}
    return req.respond(body, last_modified=newest(t.modified for t in found))


def get_provider_traits(req: PlacementRequest) -> Response:
    req.require_version(mv.TRAITS)
    req.authorize("placement:resource_providers:traits:list")
    uuid = req.path_params["uuid"]
    try:
        provider, found = req.service.get_provider_traits(uuid)
    except errors.NotFound as exc:
        raise errors.NotFound(
            f"No resource provider with uuid {uuid} found: {exc.message}"
        ) from None
    return _provider_traits(req, provider, found)


def set_provider_traits(req: PlacementRequest) -> Response:
    req.require_version(mv.TRAITS)
    req.authorize("placement:resource_providers:traits:update")
    data = req.json(schemas.SET_FOR_PROVIDER)
    provider, found = req.service.set_provider_traits(
        req.path_params["uuid"], data["traits"], generation=data["resource_provider_generation"]
    )
    return _provider_traits(req, provider, found)


def delete_provider_traits(req: PlacementRequest) -> Response:
    req.require_version(mv.TRAITS)
    req.authorize("placement:resource_providers:traits:delete")
    req.service.set_provider_traits(req.path_params["uuid"], [], generation=None)
    return req.respond(None, 204)
