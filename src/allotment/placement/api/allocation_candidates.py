"""GET /allocation_candidates (microversion 1.10 and later).

Response shapes by microversion: allocation requests are a list of
``{"resource_provider": {"uuid"}, "resources"}`` before 1.12 and a dict keyed by provider
uuid from 1.12; ``mappings`` from 1.34. Provider summaries carry traits from 1.17, every
resource class (not only the requested ones) from 1.27, parent and root uuids from 1.29.

The JSON is written from the candidate arrays through string templates, one per distinct
shape (which slots share a provider; which classes and traits a provider has), because
building and encoding one dict per candidate costs ~40 us and a large answer has 100,000.
Every name put into a template is JSON-encoded once; uuids and numbers need no escaping.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import orjson
from starlette.responses import Response

from allotment import errors
from allotment.placement.api import params
from allotment.placement.api.http import PlacementRequest, newest
from allotment.placement.candidates import CandidateSet
from allotment.placement.index.capacity import I64, IntArray
from allotment.placement.schemas import allocation_candidate as schemas

MIN_MINOR = 10
DICT_ALLOCATIONS_MINOR = 12
TRAITS_MINOR = 17
ALL_RESOURCES_MINOR = 27
TREES_MINOR = 29
MAPPINGS_MINOR = 34


def _json(value: object) -> str:
    return orjson.dumps(value).decode().replace("%", "%%")


def _shapes(codes: IntArray) -> tuple[IntArray, IntArray]:
    """Distinct codes and each element's index among them (sorting only if they differ)."""
    if not len(codes) or (codes == codes[0]).all():
        return codes[:1], np.zeros(len(codes), I64)
    distinct, inverse = np.unique(codes, return_inverse=True)
    return distinct, inverse.ravel().astype(I64)


def _fill(
    out: npt.NDArray[np.object_],
    template: str,
    members: IntArray,
    columns: Sequence[list[object]],
) -> None:
    out[members] = [template % values for values in zip(*columns, strict=True)]


def _allocation_requests(cands: CandidateSet, minor: int) -> str:
    picks = cands.picks
    n_slots, count = picks.shape
    if not count:
        return "[]"
    # first[s]: the first slot that has the same provider as slot s, per candidate.
    first = np.repeat(np.arange(n_slots, dtype=I64)[:, None], count, axis=1)
    for s in range(n_slots):
        for t in range(s):
            first[s] = np.where((first[s] == s) & (picks[t] == picks[s]), t, first[s])
    if n_slots <= 15:
        code = np.zeros(count, I64)
        for s in range(n_slots):
            code = code * n_slots + first[s]
        distinct_codes, shape_of = _shapes(code)
        patterns = [first[:, int(np.flatnonzero(code == c)[0])] for c in distinct_codes]
    else:
        distinct, shape_of = np.unique(first.T, axis=0, return_inverse=True)
        shape_of = shape_of.ravel().astype(I64)
        patterns = list(distinct)
    out = np.empty(count, object)
    uuid_rows = [cands.uuids[picks[s]] for s in range(n_slots)]
    for k, pattern in enumerate(patterns):
        members = np.flatnonzero(shape_of == k)
        template, columns = _request_template(cands, [int(x) for x in pattern], minor)
        _fill(out, template, members, [uuid_rows[s][members].tolist() for s in columns])
    return "[" + ",".join(out.tolist()) + "]"


def _request_template(cands: CandidateSet, first: list[int], minor: int) -> tuple[str, list[int]]:
    """The JSON of candidates whose slots share providers as ``first`` says, with one %s per
    provider uuid, and which slot each %s takes its uuid from."""
    resources: dict[int, dict[str, int]] = {}
    for s, slot in enumerate(cands.slots):
        if slot.resources:
            merged = resources.setdefault(first[s], {})
            for name, amount in slot.resources:
                merged[name] = merged.get(name, 0) + amount
    columns: list[int] = []
    if minor >= DICT_ALLOCATIONS_MINOR:
        parts = []
        for s, merged in resources.items():
            parts.append(f'"%s":{{"resources":{_json(merged)}}}')
            columns.append(s)
        text = '{"allocations":{' + ",".join(parts) + "}"
        if minor >= MAPPINGS_MINOR:
            mapped: dict[str, list[int]] = {suffix: [] for suffix in cands.suffixes}
            for s, slot in enumerate(cands.slots):
                if first[s] not in mapped[slot.suffix]:
                    mapped[slot.suffix].append(first[s])
            groups = []
            for suffix, providers in mapped.items():
                groups.append(_json(suffix) + ":[" + ",".join('"%s"' for _ in providers) + "]")
                columns += providers
            text += ',"mappings":{' + ",".join(groups) + "}"
        return text + "}", columns
    parts = []
    for s, merged in resources.items():
        parts.append(f'{{"resource_provider":{{"uuid":"%s"}},"resources":{_json(merged)}}}')
        columns.append(s)
    return '{"allocations":[' + ",".join(parts) + "]}", columns


def _provider_summaries(cands: CandidateSet, minor: int) -> str:
    count = len(cands.summary)
    if not count:
        return "{}"
    shown = [
        c
        for c, name in enumerate(cands.class_names)
        if minor >= ALL_RESOURCES_MINOR or name in cands.requested
    ]
    has = cands.has_inventory[shown]
    traits = minor >= TRAITS_MINOR
    trees = minor >= TREES_MINOR
    trait_set = cands.trait_set if traits else np.zeros(count, I64)
    has_parent = (cands.summary_parent >= 0) & trees
    keys = [*has.astype(I64), trait_set, has_parent.astype(I64)]
    widths = [1] * len(shown) + [max(1, len(cands.trait_sets).bit_length()), 1]
    if sum(widths) <= 62:
        code = np.zeros(count, I64)
        for width, key in zip(widths, keys, strict=True):
            code = (code << width) | key
        distinct, shape_of = _shapes(code)
        examples = [int(np.flatnonzero(code == c)[0]) for c in distinct]
    else:
        stacked = np.stack(keys)
        _, first, shape_of = np.unique(stacked, axis=1, return_index=True, return_inverse=True)
        shape_of = shape_of.ravel().astype(I64)
        examples = [int(i) for i in first]
    uuids = cands.uuids
    out = np.empty(count, object)
    for k, example in enumerate(examples):
        members = np.flatnonzero(shape_of == k)
        present = [c for i, c in enumerate(shown) if has[i, example]]
        resources = ",".join(
            _json(cands.class_names[c]) + ':{"capacity":%d,"used":%d}' for c in present
        )
        template = '"%s":{"resources":{' + resources + "}"
        columns: list[list[object]] = [uuids[cands.summary[members]].tolist()]
        for c in present:
            columns.append(cands.capacity[c, members].tolist())
            columns.append(cands.used[c, members].tolist())
        if traits:
            template += ',"traits":' + _json(list(cands.trait_sets[int(trait_set[example])]))
        if trees:
            if has_parent[example]:
                template += ',"parent_provider_uuid":"%s"'
                columns.append(uuids[cands.summary_parent[members]].tolist())
            else:
                template += ',"parent_provider_uuid":null'
            template += ',"root_provider_uuid":"%s"'
            columns.append(uuids[cands.summary_root[members]].tolist())
        _fill(out, template + "}", members, columns)
    return "{" + ",".join(out.tolist()) + "}"


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
        "allocation_requests": orjson.Fragment(_allocation_requests(cands, minor)),
        "provider_summaries": orjson.Fragment(_provider_summaries(cands, minor)),
    }
    return req.respond(body, last_modified=newest(()))
