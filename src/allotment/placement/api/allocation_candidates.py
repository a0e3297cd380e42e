"""GET /allocation_candidates (microversion 1.10 and later).

Response shapes by microversion: allocation requests are a list of
``{"resource_provider": {"uuid"}, "resources"}`` before 1.12 and a dict keyed by provider
uuid from 1.12; ``mappings`` from 1.34. Provider summaries carry traits from 1.17, every
resource class (not only the requested ones) from 1.27, parent and root uuids from 1.29.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from allotment import errors
from allotment.placement.api import params
from allotment.placement.api.http import PlacementRequest, newest
from allotment.placement.candidates import CandidateSet
from allotment.placement.schemas import allocation_candidate as schemas

MIN_MINOR = 10
DICT_ALLOCATIONS_MINOR = 12
TRAITS_MINOR = 17
ALL_RESOURCES_MINOR = 27
TREES_MINOR = 29
MAPPINGS_MINOR = 34


def _requests(cands: CandidateSet, minor: int) -> list[dict[str, Any]]:
    out = []
    for candidate in range(len(cands)):
        allocations = cands.allocations(candidate)
        if minor >= DICT_ALLOCATIONS_MINOR:
            entry: dict[str, Any] = {
                "allocations": {u: {"resources": r} for u, r in allocations.items()}
            }
            if minor >= MAPPINGS_MINOR:
                entry["mappings"] = cands.mappings(candidate)
        else:
            entry = {
                "allocations": [
                    {"resource_provider": {"uuid": u}, "resources": r}
                    for u, r in allocations.items()
                ]
            }
        out.append(entry)
    return out


def _summaries(cands: CandidateSet, minor: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    shown = [
        (c, name)
        for c, name in enumerate(cands.class_names)
        if minor >= ALL_RESOURCES_MINOR or name in cands.requested
    ]
    has, capacity, used = cands.has_inventory, cands.capacity, cands.used
    uuids = cands.uuids
    for i, provider in enumerate(cands.summary.tolist()):
        summary: dict[str, Any] = {
            "resources": {
                name: {"capacity": int(capacity[c, i]), "used": int(used[c, i])}
                for c, name in shown
                if has[c, i]
            }
        }
        if minor >= TRAITS_MINOR:
            summary["traits"] = list(cands.traits[i])
        if minor >= TREES_MINOR:
            parent = int(cands.summary_parent[i])
            summary["parent_provider_uuid"] = None if parent < 0 else uuids[parent]
            summary["root_provider_uuid"] = uuids[int(cands.summary_root[i])]
        out[uuids[provider]] = summary
    return out


def list_allocation_candidates(req: PlacementRequest) -> Response:
    if not req.mv.at_least(MIN_MINOR):
        raise errors.NotFound("The resource could not be found.")
    req.authorize("placement:allocation_candidates:list")
    schemas.list_query(req.mv.minor).validate(req.query_dict())
    request = params.candidate_request(req.query, req.mv)
    try:
        cands: CandidateSet = req.service.allocation_candidates(request)
    except errors.UnknownResourceClass as exc:
        raise errors.InvalidInput(
            f"Invalid resource class in resources parameter: {exc.message}"
        ) from None
    minor = req.mv.minor
    body = {
        "allocation_requests": _requests(cands, minor),
        "provider_summaries": _summaries(cands, minor),
    }
    return req.respond(body, last_modified=newest(()))
