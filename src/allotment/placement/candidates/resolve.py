"""Turning a request that names things (classes, traits) into one that holds ids.

Unknown resource classes and traits are errors (400 with upstream's message); the first
unknown name is reported, checking ``root_required`` first and then each group in request
order, as upstream does. Unknown aggregates and ``in_tree`` providers are not errors: they
match nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from allotment import errors
from allotment.placement.candidates.engine import Need, Query
from allotment.placement.index.capacity import BoolArray, IndexState
from allotment.placement.model import CandidateRequest, RequestGroup
from allotment.placement.store.catalog import Catalog

SHARING_TRAIT = "MISC_SHARES_VIA_AGGREGATE"


def trait_ids(catalog: Catalog, names: Iterable[str]) -> tuple[int, ...]:
    ordered = sorted(set(names))
    found, missing = catalog.traits.ids_of(ordered)
    if missing:
        raise errors.UnknownTrait(missing[0])
    return tuple(sorted(found[name] for name in ordered))


def need_of(catalog: Catalog, group: RequestGroup) -> Need:
    names = list(group.resources)
    found, missing = catalog.resource_classes.ids_of(names)
    if missing:
        raise errors.UnknownResourceClass(missing[0])
    resources = tuple(sorted((found[name], name, group.resources[name]) for name in names))
    required = tuple(sorted({trait_ids(catalog, any_of) for any_of in group.required_traits}))
    return Need(
        suffix=group.suffix,
        resources=resources,
        required=required,
        forbidden=trait_ids(catalog, group.forbidden_traits),
        member_of=tuple(sorted(set(group.member_of), key=sorted)),
        forbidden_aggregates=group.forbidden_aggregates,
        in_tree=group.in_tree,
    )


def query_of(
    catalog: Catalog,
    request: CandidateRequest,
    *,
    limit: int | None,
    randomize: bool,
    distinct: bool = True,
) -> Query:
    root_required = trait_ids(catalog, request.root_required)
    root_forbidden = trait_ids(catalog, request.root_forbidden)
    return Query(
        needs=tuple(need_of(catalog, group) for group in request.groups),
        group_policy=request.group_policy,
        root_required=root_required,
        root_forbidden=root_forbidden,
        same_subtrees=request.same_subtrees,
        nested_aware=request.nested_aware,
        sharing_trait=catalog.traits.id_of(SHARING_TRAIT),
        limit=limit,
        randomize=randomize,
        distinct=distinct,
    )


def provider_mask(state: IndexState, need: Need) -> BoolArray:
    """Providers that on their own meet ``need`` (``GET /resource_providers`` filters)."""
    mask = state.alive[: state.size].copy()
    for rc_id, _, amount in need.resources:
        mask &= state.resource_ok(rc_id, amount)
    for any_of in need.required:
        mask &= state.any_trait(any_of)
    if need.forbidden:
        mask &= ~state.any_trait(need.forbidden)
    for aggregates in need.member_of:
        mask &= state.in_any_aggregate(
            state.agg_by_uuid[u] for u in aggregates if u in state.agg_by_uuid
        )
    if need.forbidden_aggregates:
        mask &= ~state.in_any_aggregate(
            state.agg_by_uuid[u] for u in need.forbidden_aggregates if u in state.agg_by_uuid
        )
    return mask
