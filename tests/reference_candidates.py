"""Brute-force allocation candidates, written for clarity rather than speed.

Upstream Placement's rules, as its code applies them, enumerated exhaustively over a
``World``:

* A candidate is anchored at a root. Each provider in it is in the anchor's tree or is a
  sharing provider (MISC_SHARES_VIA_AGGREGATE) in an aggregate with some provider of it.
* A granular (suffixed) group takes all its resources from one provider that itself has the
  capacity (free, min_unit, max_unit, step_size), the required traits (each any-of set),
  none of the forbidden ones, an aggregate of each member_of set and none of the forbidden
  aggregates; in_tree limits that provider to one tree. A resourceless group matches only
  through required traits or member_of, and ignores in_tree.
* The unsuffixed group takes each resource class from any provider of the anchor's tree or
  a sharing provider (not with in_tree); member_of may be met by that provider or by the
  anchor, forbidden aggregates by neither; the traits are required of the providers used,
  together, and forbidden of each.
* Over all groups: group_policy=isolate needs distinct providers for the granular groups;
  amounts a provider gets from several groups must fit its free capacity and max_unit
  together; for each same_subtree, one chosen provider is an ancestor of (or is) all the
  others; before 1.29 (when trees exist) two providers of one tree may not both give
  resources.
* Candidates are distinct (allocations, mappings) pairs.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from allotment.placement.model import CandidateRequest, RequestGroup
from tests.world import Prov, World

SHARING = "MISC_SHARES_VIA_AGGREGATE"

Allocation = frozenset[tuple[str, str, int]]  # (provider uuid, class, amount)
Mapping = frozenset[tuple[str, frozenset[str]]]  # (suffix, provider uuids)


@dataclass(frozen=True)
class Candidate:
    allocations: Allocation
    mappings: Mapping
    # What built it (not part of its identity).
    anchor: str = field(compare=False, default="")
    picks: tuple[tuple[str, ...], ...] = field(compare=False, default=())


def fits(p: Prov, rc: str, amount: int) -> bool:
    inv = p.inventory.get(rc)
    if inv is None:
        return False
    return (
        p.used.get(rc, 0) + amount <= inv.capacity
        and inv.min_unit <= amount <= inv.max
        and amount % inv.step_size == 0
    )


def meets_traits(traits: set[str], group: RequestGroup) -> bool:
    return all(traits & any_of for any_of in group.required_traits)


def in_aggregates(p: Prov, member_of: tuple[frozenset[str], ...]) -> bool:
    return all(p.aggregates & any_of for any_of in member_of)


class Reference:
    def __init__(self, world: World, request: CandidateRequest) -> None:
        self.world = world
        self.request = request
        self.providers = list(world.providers.values())
        self.roots = [p for p in self.providers if p.parent is None]
        self.has_trees = any(p.parent is not None for p in self.providers)

    def tree(self, root: Prov) -> list[Prov]:
        return [p for p in self.providers if self.world.root(p) is root]

    def anchors_of_sharing(self, s: Prov) -> set[str]:
        return {self.world.root(q).uuid for q in self.providers if q.aggregates & s.aggregates}

    def anchor_ok(self, root: Prov) -> bool:
        req = self.request
        return req.root_required <= root.traits and not (req.root_forbidden & root.traits)

    def in_tree_root(self, group: RequestGroup) -> Prov | bool | None:
        """The root ``in_tree`` names, None without in_tree, False if it does not exist."""
        if group.in_tree is None:
            return None
        p = self.world.by_uuid.get(group.in_tree)
        return False if p is None else self.world.root(p)

    def granular_options(self, group: RequestGroup) -> list[tuple[str, tuple[Prov, ...]]]:
        if not group.resources and not (group.required_traits or group.member_of):
            return []
        tree_root = self.in_tree_root(group)
        if tree_root is False:
            return []
        options = []
        for p in self.providers:
            if not all(fits(p, rc, a) for rc, a in group.resources.items()):
                continue
            if not meets_traits(p.traits, group) or p.traits & group.forbidden_traits:
                continue
            if not in_aggregates(p, group.member_of) or p.aggregates & group.forbidden_aggregates:
                continue
            if group.resources and tree_root is not None and self.world.root(p) is not tree_root:
                continue
            anchors = {self.world.root(p).uuid}
            if SHARING in p.traits:
                anchors |= self.anchors_of_sharing(p)
            options += [(a, (p,)) for a in sorted(anchors)]
        return [(a, picks) for a, picks in options if self.anchor_ok(self.world.by_uuid[a])]

    def unsuffixed_options(self, group: RequestGroup) -> list[tuple[str, tuple[Prov, ...]]]:
        tree_root = self.in_tree_root(group)
        if tree_root is False:
            return []
        options = []
        for anchor in self.roots:
            if not self.anchor_ok(anchor):
                continue
            if tree_root is not None and anchor is not tree_root:
                continue
            anchor_in = in_aggregates(anchor, group.member_of)
            anchor_bad = bool(anchor.aggregates & group.forbidden_aggregates)
            choices = []
            for rc, amount in sorted(group.resources.items()):
                usable = list(self.tree(anchor))
                if tree_root is None:
                    usable += [
                        s
                        for s in self.providers
                        if SHARING in s.traits
                        and self.world.root(s) is not anchor
                        and anchor.uuid in self.anchors_of_sharing(s)
                        and in_aggregates(s, group.member_of)
                    ]
                choices.append(
                    [
                        p
                        for p in usable
                        if fits(p, rc, amount)
                        and not (p.traits & group.forbidden_traits)
                        and (anchor_in or in_aggregates(p, group.member_of))
                        and not anchor_bad
                        and not (p.aggregates & group.forbidden_aggregates)
                    ]
                )
            for combo in itertools.product(*choices):
                traits = set().union(*(p.traits for p in combo))
                if meets_traits(traits, group):
                    options.append((anchor.uuid, combo))
        return options

    def candidates(self) -> set[Candidate]:
        req = self.request
        groups = req.groups
        per_group = [
            self.granular_options(g) if g.use_same_provider else self.unsuffixed_options(g)
            for g in groups
        ]
        found: set[Candidate] = set()
        for anchor in self.roots:
            at_anchor = [
                [picks for a, picks in options if a == anchor.uuid] for options in per_group
            ]
            for combo in itertools.product(*at_anchor):
                candidate = self.check(anchor, combo)
                if candidate is not None:
                    found.add(candidate)
        return found

    def check(self, anchor: Prov, combo: tuple[tuple[Prov, ...], ...]) -> Candidate | None:
        req = self.request
        amounts: dict[tuple[str, str], int] = defaultdict(int)
        for group, picks in zip(req.groups, combo, strict=True):
            if group.use_same_provider:
                for rc, a in group.resources.items():
                    amounts[(picks[0].name, rc)] += a
            else:
                for (rc, a), p in zip(sorted(group.resources.items()), picks, strict=True):
                    amounts[(p.name, rc)] += a
        for (name, rc), total in amounts.items():
            p = self.world.providers[name]
            inv = p.inventory[rc]
            if p.used.get(rc, 0) + total > inv.capacity or total > inv.max:
                return None
        granular = [picks[0] for g, picks in zip(req.groups, combo, strict=True) if g.suffix]
        if req.group_policy == "isolate" and len({p.name for p in granular}) < len(granular):
            return None
        for subtree in req.same_subtrees:
            chosen = {
                picks[0].name
                for g, picks in zip(req.groups, combo, strict=True)
                if g.suffix in subtree
            }
            if not any(
                all(
                    top in {a.name for a in self.world.ancestors(self.world.providers[n])}
                    for n in chosen
                )
                for top in chosen
            ):
                return None
        if not req.nested_aware and self.has_trees:
            giving = {name for name, _ in amounts}
            roots = {self.world.root(self.world.providers[name]).name for name in giving}
            if len(roots) < len(giving):
                return None
        allocation = frozenset(
            (self.world.providers[name].uuid, rc, total) for (name, rc), total in amounts.items()
        )
        mappings = frozenset(
            (g.suffix, frozenset(p.uuid for p in picks))
            for g, picks in zip(req.groups, combo, strict=True)
        )
        picks_by_group = tuple(tuple(p.uuid for p in picks) for picks in combo)
        return Candidate(allocation, mappings, anchor.uuid, picks_by_group)

    def summaries(
        self, returned: list[Candidate], everything: set[Candidate]
    ) -> dict[str, dict[str, object]]:
        """Summaries for ``returned``: whole trees of the providers they allocate from (before
        1.29 with trees: only providers that some candidate of those trees allocates from)."""
        world = self.world
        roots = {world.root(world.by_uuid[u]).uuid for c in returned for u, _, _ in c.allocations}
        if not self.request.nested_aware and self.has_trees:
            shown = {
                u
                for c in everything
                for u, _, _ in c.allocations
                if world.root(world.by_uuid[u]).uuid in roots
            }
        else:
            shown = {p.uuid for p in self.providers if world.root(p).uuid in roots}
        out: dict[str, dict[str, object]] = {}
        for u in shown:
            p = world.by_uuid[u]
            parent = world.parent(p)
            out[u] = {
                "resources": {
                    rc: (inv.capacity, p.used.get(rc, 0)) for rc, inv in p.inventory.items()
                },
                "traits": set(p.traits),
                "parent": None if parent is None else parent.uuid,
                "root": world.root(p).uuid,
            }
        return out


def interchangeable_class(world: World, p: Prov) -> tuple[object, ...]:
    """Leaves with the same parent and identical inventories, usage, traits and aggregates
    may be swapped between identical groups without changing a candidate's meaning."""
    has_children = any(q.parent == p.name for q in world.providers.values())
    if p.parent is None or has_children:
        return ("unique", p.name)
    used = tuple(sorted((rc, u) for rc, u in p.used.items() if u))
    return (
        p.parent,
        tuple(sorted(p.inventory.items())),
        used,
        frozenset(p.traits),
        frozenset(p.aggregates),
    )


def group_key(group: RequestGroup, request: CandidateRequest) -> tuple[object, ...]:
    return (
        tuple(sorted(group.resources.items())),
        frozenset(group.required_traits),
        group.forbidden_traits,
        frozenset(group.member_of),
        group.forbidden_aggregates,
        group.in_tree,
        tuple(group.suffix in s for s in request.same_subtrees),
    )


def canonical(
    world: World, request: CandidateRequest, candidate: Candidate
) -> tuple[Allocation, Mapping]:
    """One representative per set of candidates that differ only by swapping interchangeable
    providers between identical granular groups: within each (identical groups, provider
    class), the picks are put in uuid order."""
    picks = dict(candidate.mappings)
    by_key: dict[tuple[object, ...], list[str]] = defaultdict(list)
    for group in request.groups:
        if group.suffix:
            by_key[group_key(group, request)].append(group.suffix)
    for suffixes in by_key.values():
        by_class: dict[tuple[object, ...], list[str]] = defaultdict(list)
        for suffix in suffixes:
            (uuid,) = picks[suffix]
            by_class[interchangeable_class(world, world.by_uuid[uuid])].append(suffix)
        for members in by_class.values():
            chosen = sorted(next(iter(picks[s])) for s in members)
            for suffix, uuid in zip(members, chosen, strict=True):
                picks[suffix] = frozenset({uuid})
    return candidate.allocations, frozenset(picks.items())


def iter_reference(world: World, request: CandidateRequest) -> Iterator[Candidate]:
    yield from Reference(world, request).candidates()
