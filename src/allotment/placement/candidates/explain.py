"""Why a candidate query found nothing: hosts (provider trees) left after each constraint.

The constraints of a query, in order (root traits, then each request group's resource
classes, traits, aggregates and ``in_tree``), are applied one after the other to the trees
of the index; each step records how many trees it received and kept. A tree meets a
constraint of the unsuffixed group when some provider of the tree does (the group may
take each class from a different provider); the constraints of a granular group must all
hold on one provider. ``only_blocker`` is the number of trees that meet every other
constraint but not this one: the hosts that relaxing it alone would bring back.

These are vectorized passes over the index (no per-host Python). They leave out sharing
providers, ``group_policy`` and ``same_subtree``, which act between groups: when every
step keeps some tree and the query still found nothing, those are what failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from allotment.placement.candidates.engine import Need, Query
from allotment.placement.index.capacity import BoolArray, IndexState


@dataclass(frozen=True, slots=True)
class Step:
    constraint: str  # resources, required_trait, forbidden_trait, member_of, ...
    value: Any
    group: str
    before: int
    after: int
    only_blocker: int


@dataclass(frozen=True, slots=True)
class _Constraint:
    constraint: str
    value: Any
    group: int  # index into query.needs, -1 for the root constraints
    provider_mask: Callable[[], BoolArray]
    # How a tree meets it: "some" provider of the tree does, or its "root" does.
    on: str = "some"


def _constraints(state: IndexState, query: Query, names: Callable[[int], str]) -> list[_Constraint]:
    out: list[_Constraint] = []
    for trait in query.root_required:
        out.append(_Constraint("root_required", names(trait), -1, _any(state, (trait,)), "root"))
    for trait in query.root_forbidden:
        out.append(_Constraint("root_forbidden", names(trait), -1, _none(state, (trait,)), "root"))
    for g, need in enumerate(query.needs):
        out += _group_constraints(state, g, need, names)
    return out


def _any(state: IndexState, traits: tuple[int, ...]) -> Callable[[], BoolArray]:
    return lambda: state.any_trait(traits)


def _none(state: IndexState, traits: tuple[int, ...]) -> Callable[[], BoolArray]:
    return lambda: ~state.any_trait(traits)


def _resource(state: IndexState, rc_id: int, amount: int) -> Callable[[], BoolArray]:
    return lambda: state.resource_ok(rc_id, amount)


def _member(state: IndexState, uuids: frozenset[str]) -> Callable[[], BoolArray]:
    return lambda: _aggregates(state, uuids)


def _aggregates(state: IndexState, uuids: frozenset[str]) -> BoolArray:
    ids = [state.agg_by_uuid[u] for u in uuids if u in state.agg_by_uuid]
    mask: BoolArray = state.in_any_aggregate(ids)
    return mask


def _group_constraints(
    state: IndexState, g: int, need: Need, names: Callable[[int], str]
) -> list[_Constraint]:
    out = []
    for rc_id, name, amount in need.resources:
        out.append(
            _Constraint(
                "resources",
                f"{name}:{amount}",
                g,
                _resource(state, rc_id, amount),
            )
        )
    for any_of in need.required:
        value: Any = [names(t) for t in any_of]
        out.append(
            _Constraint(
                "required_trait", value[0] if len(value) == 1 else value, g, _any(state, any_of)
            )
        )
    for trait in need.forbidden:
        out.append(_Constraint("forbidden_trait", names(trait), g, _none(state, (trait,))))
    for uuids in need.member_of:
        out.append(_Constraint("member_of", sorted(uuids), g, _member(state, uuids)))
    if need.forbidden_aggregates:
        bad = need.forbidden_aggregates
        out.append(
            _Constraint(
                "forbidden_aggregates",
                sorted(bad),
                g,
                lambda: ~_aggregates(state, bad),
                "root" if not need.granular else "some",
            )
        )
    if need.in_tree is not None:
        tree = need.in_tree

        def in_tree() -> BoolArray:
            row = state.row_of_uuid.get(tree)
            n = state.size
            if row is None:
                return np.zeros(n, bool)
            mask: BoolArray = state.root[:n] == state.root[row]
            return mask

        out.append(_Constraint("in_tree", tree, g, in_tree))
    return out


def explain(
    state: IndexState, query: Query, trait_name: Callable[[int], str]
) -> tuple[int, list[Step]]:
    """(trees considered, the steps) for ``query`` against ``state`` (lock held)."""
    n = state.size
    alive = state.alive[:n]
    roots = np.flatnonzero(alive & (state.parent[:n] < 0))
    root_of = state.root[:n]
    constraints = _constraints(state, query, trait_name)
    masks = [c.provider_mask()[:n] & alive for c in constraints]

    def trees(providers: BoolArray) -> BoolArray:
        """Per root (in ``roots`` order): whether some provider of its tree is marked."""
        marked = np.zeros(n, bool)
        marked[root_of[providers]] = True
        found: BoolArray = marked[roots]
        return found

    def passing(skip: int | None) -> list[BoolArray]:
        """Per constraint, the trees left after it (and all before it), ``skip`` ignored."""
        left = np.ones(len(roots), bool)
        per_group: dict[int, BoolArray] = {}
        out = []
        for k, constraint in enumerate(constraints):
            if k != skip:
                need = query.needs[constraint.group] if constraint.group >= 0 else None
                if constraint.on == "root":
                    left = left & masks[k][roots]
                elif need is not None and need.granular:
                    group = per_group.get(constraint.group, alive) & masks[k]
                    per_group[constraint.group] = group
                    left = left & trees(group)
                else:
                    left = left & trees(masks[k])
            out.append(left)
        return out

    steps = passing(None)
    full = int(steps[-1].sum()) if steps else len(roots)
    result = []
    before = len(roots)
    for k, constraint in enumerate(constraints):
        after = int(steps[k].sum())
        without = int(passing(k)[-1].sum())
        group = query.needs[constraint.group].suffix if constraint.group >= 0 else ""
        result.append(
            Step(constraint.constraint, constraint.value, group, before, after, without - full)
        )
        before = after
    return len(roots), result
