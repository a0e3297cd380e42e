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
from allotment.placement import microversions as mv
from allotment.placement.api import params
from allotment.placement.api.http import PlacementRequest, in_thread, newest
from allotment.placement.candidates import CandidateSet
from allotment.placement.index.capacity import I64, IntArray
from allotment.placement.schemas import allocation_candidate as schemas

UUID_LENGTH = 36


def _raw_json(value: object) -> str:
    return orjson.dumps(value).decode()


def _json(value: object) -> str:
    """JSON for a %-template (``%`` doubled)."""
    return _raw_json(value).replace("%", "%%")


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


def _allocation_requests(cands: CandidateSet, minor: int) -> bytes:
    picks = cands.picks
    n_slots, count = picks.shape
    if not count:
        return b"[]"
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
    shapes = [_request_pieces(cands, [int(x) for x in pattern], minor) for pattern in patterns]
    uuid_bytes = _uuid_bytes(cands.uuids)
    if uuid_bytes is None:
        return _requests_by_template(cands, shapes, shape_of).encode()
    return _requests_by_bytes(cands, shapes, shape_of, uuid_bytes)


def _uuid_bytes(uuids: npt.NDArray[np.object_]) -> npt.NDArray[np.uint8] | None:
    """The uuids as a (providers, 36) byte matrix, or None unless each is 36 ASCII
    characters (the canonical form; placement accepts others and keeps them as given)."""
    names: list[str] = uuids.tolist()
    if set(map(len, names)) != {UUID_LENGTH}:
        return None
    joined = "".join(names)
    if not joined.isascii():
        return None
    matrix: npt.NDArray[np.uint8] = np.frombuffer(joined.encode(), np.uint8)
    return matrix.reshape(len(names), UUID_LENGTH)


def _requests_by_bytes(
    cands: CandidateSet,
    shapes: Sequence[tuple[list[str], list[int]]],
    shape_of: IntArray,
    uuid_bytes: npt.NDArray[np.uint8],
) -> bytes:
    """The candidates' JSON laid out as byte rows, one array operation per piece: every
    candidate of a shape has the same constant pieces and 36-byte uuids between them."""
    count = len(shape_of)
    widths = [
        sum(len(piece.encode()) for piece in pieces) + UUID_LENGTH * len(slots) + 1
        for pieces, slots in shapes
    ]
    row_width = np.asarray(widths, I64)[shape_of]
    starts = np.cumsum(row_width) - row_width
    out = np.empty(int(row_width.sum()), np.uint8)
    for k, (pieces, slots) in enumerate(shapes):
        members = np.flatnonzero(shape_of == k) if len(shapes) > 1 else np.arange(count)
        rows = np.empty((len(members), widths[k]), np.uint8)
        at = 0
        for piece, slot in zip(pieces, [*slots, None], strict=True):
            raw = np.frombuffer(piece.encode(), np.uint8)
            rows[:, at : at + len(raw)] = raw
            at += len(raw)
            if slot is not None:
                rows[:, at : at + UUID_LENGTH] = uuid_bytes[cands.picks[slot, members]]
                at += UUID_LENGTH
        rows[:, at] = ord(",")
        if len(shapes) == 1:
            out = rows.ravel()
        else:
            out[starts[members, None] + np.arange(widths[k], dtype=I64)] = rows
    return b"[" + out[:-1].tobytes() + b"]"


def _requests_by_template(
    cands: CandidateSet, shapes: Sequence[tuple[list[str], list[int]]], shape_of: IntArray
) -> str:
    """The candidates' JSON through %-templates (any uuid spelling)."""
    out = np.empty(len(shape_of), object)
    uuid_rows = [cands.uuids[cands.picks[s]] for s in range(cands.picks.shape[0])]
    for k, (pieces, slots) in enumerate(shapes):
        members = np.flatnonzero(shape_of == k)
        template = "%s".join(piece.replace("%", "%%") for piece in pieces)
        _fill(out, template, members, [uuid_rows[s][members].tolist() for s in slots])
    return "[" + ",".join(out.tolist()) + "]"


def _request_pieces(
    cands: CandidateSet, first: list[int], minor: int
) -> tuple[list[str], list[int]]:
    """The JSON of candidates whose slots share providers as ``first`` says: the constant
    pieces, between which go provider uuids, and the slot each uuid is taken from."""
    resources: dict[int, dict[str, int]] = {}
    for s, slot in enumerate(cands.slots):
        if slot.resources:
            merged = resources.setdefault(first[s], {})
            for name, amount in slot.resources:
                merged[name] = merged.get(name, 0) + amount
    slots: list[int] = []
    pieces: list[str] = []
    text = ""
    if minor >= mv.DICT_ALLOCATIONS:
        text = '{"allocations":{'
        for i, (s, merged) in enumerate(resources.items()):
            pieces.append(text + ("," if i else "") + '"')
            slots.append(s)
            text = f'":{{"resources":{_raw_json(merged)}}}'
        text += "}"
        if minor >= mv.MAPPINGS:
            mapped: dict[str, list[int]] = {suffix: [] for suffix in cands.suffixes}
            for s, slot in enumerate(cands.slots):
                if first[s] not in mapped[slot.suffix]:
                    mapped[slot.suffix].append(first[s])
            text += ',"mappings":{'
            for g, (suffix, providers) in enumerate(mapped.items()):
                text += ("," if g else "") + _raw_json(suffix) + ":["
                for i, s in enumerate(providers):
                    pieces.append(text + ("," if i else "") + '"')
                    slots.append(s)
                    text = '"'
                text += "]"
            text += "}"
        pieces.append(text + "}")
        return pieces, slots
    text = '{"allocations":['
    for i, (s, merged) in enumerate(resources.items()):
        pieces.append(text + ("," if i else "") + '{"resource_provider":{"uuid":"')
        slots.append(s)
        text = f'"}},"resources":{_raw_json(merged)}}}'
    pieces.append(text + "]}")
    return pieces, slots


def _provider_summaries(cands: CandidateSet, minor: int) -> bytes:
    """The ``provider_summaries`` object. From 1.27 a summary depends on the provider only
    (every class it has, its traits, its tree), so each provider's fragment is rendered once
    per row version and reused by later answers until the provider changes."""
    count = len(cands.summary)
    if not count:
        return b"{}"
    if minor < mv.ALL_RESOURCES_SUMMARY or cands.row_cache is None:
        every = np.arange(count, dtype=I64)
        return ("{" + ",".join(_summary_fragments(cands, minor, every)) + "}").encode()
    cache = cands.row_cache("summary-trees" if minor >= mv.NESTED_CANDIDATES else "summary")
    rows, versions = cands.summary_rows, cands.summary_versions
    fragments, stale = cache.lookup(rows, versions)
    if len(stale):
        fresh = [text.encode() for text in _summary_fragments(cands, minor, stale)]
        fragments[stale] = fresh
        cache.store(rows[stale], versions[stale], fresh)
    return b"{" + b",".join(fragments.tolist()) + b"}"


def _summary_fragments(cands: CandidateSet, minor: int, which: IntArray) -> list[str]:
    """The ``"uuid":{...}`` fragments of the summarized providers at positions ``which``,
    rendered through one template per distinct shape (classes present, trait set, parent)."""
    count = len(which)
    shown = [
        c
        for c, name in enumerate(cands.class_names)
        if minor >= mv.ALL_RESOURCES_SUMMARY or name in cands.requested
    ]
    has = cands.has_inventory[shown][:, which]
    traits = minor >= mv.CANDIDATE_TRAITS
    trees = minor >= mv.NESTED_CANDIDATES
    trait_set = cands.trait_set[which] if traits else np.zeros(count, I64)
    parent = cands.summary_parent[which]
    has_parent = (parent >= 0) & trees
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
        at = which[members]
        present = [c for i, c in enumerate(shown) if has[i, example]]
        resources = ",".join(
            _json(cands.class_names[c]) + ':{"capacity":%d,"used":%d}' for c in present
        )
        template = '"%s":{"resources":{' + resources + "}"
        columns: list[list[object]] = [uuids[cands.summary[at]].tolist()]
        for c in present:
            columns.append(cands.capacity[c, at].tolist())
            columns.append(cands.used[c, at].tolist())
        if traits:
            template += ',"traits":' + _json(list(cands.trait_sets[int(trait_set[example])]))
        if trees:
            if has_parent[example]:
                template += ',"parent_provider_uuid":"%s"'
                columns.append(uuids[parent[members]].tolist())
            else:
                template += ',"parent_provider_uuid":null'
            template += ',"root_provider_uuid":"%s"'
            columns.append(uuids[cands.summary_root[at]].tolist())
        _fill(out, template + "}", members, columns)
    fragments: list[str] = out.tolist()
    return fragments


@in_thread
def list_allocation_candidates(req: PlacementRequest) -> Response:
    if not req.mv.at_least(mv.ALLOCATION_CANDIDATES):
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
