"""Allocation-candidate search: upstream Placement's semantics as array joins.

Vocabulary:

* anchor: the root of the tree a candidate belongs to. Every provider of a candidate is in the
  anchor's tree, or is a sharing provider (trait ``MISC_SHARES_VIA_AGGREGATE``) in an
  aggregate with some provider of that tree.
* option: one way one request group can be met under one anchor. A granular (suffixed)
  group's option is one provider; the unsuffixed group's option is one provider per resource
  class, possibly different ones.
* slot: one column of picked providers. A granular group has one slot, the unsuffixed group
  one per resource class.

A search builds every group's options with vectorized masks over all providers, then joins
the groups on the anchor, dropping combinations that break ``group_policy=isolate``, the
summed capacity of a provider several groups use, ``same_subtree`` or (before 1.29) the "one
provider per tree" rule. Combinations that differ only by swapping interchangeable providers
between identical groups are generated once (see ``_Search._symmetry_classes``).

With a limit, each anchor first keeps only its first few combinations at every join step; if
that turns out too few to fill the limit evenly across anchors, the search runs again with a
larger per-anchor allowance, so the answer is exact without enumerating what is not returned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from allotment.placement.index.capacity import I64, BoolArray, IndexState, IntArray

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Need:
    """One request group with names resolved to ids (aggregates and in_tree stay uuids: an
    unknown one simply matches nothing)."""

    suffix: str
    resources: tuple[tuple[int, str, int], ...]  # (class id, class name, amount), by class id
    required: tuple[tuple[int, ...], ...] = ()  # any-of trait id sets, all required
    forbidden: tuple[int, ...] = ()
    member_of: tuple[frozenset[str], ...] = ()
    forbidden_aggregates: frozenset[str] = frozenset()
    in_tree: str | None = None

    @property
    def granular(self) -> bool:
        return bool(self.suffix)


@dataclass(frozen=True, slots=True)
class Query:
    needs: tuple[Need, ...]
    group_policy: str | None = None
    root_required: tuple[int, ...] = ()
    root_forbidden: tuple[int, ...] = ()
    same_subtrees: tuple[frozenset[str], ...] = ()
    nested_aware: bool = True
    sharing_trait: int | None = None
    limit: int | None = None
    randomize: bool = False
    # Generate swaps of interchangeable providers between identical groups once only.
    distinct: bool = True


@dataclass(frozen=True, slots=True)
class Slot:
    group: int  # index into Query.needs
    cols: tuple[int, ...]  # index columns taken from the picked provider
    amounts: tuple[int, ...]
    names: tuple[str, ...]  # resource class names of ``cols``


@dataclass
class Found:
    """Candidates as index rows: ``picks[s][c]`` is the provider of slot ``s`` in candidate
    ``c``; ``all_*`` are every candidate found before the limit was applied."""

    slots: list[Slot]
    anchor: IntArray
    picks: list[IntArray]
    all_picks: list[IntArray] = field(default_factory=list)


_EMPTY = np.zeros(0, I64)
# Most rows one join step may produce (~70 bytes a row with 8 slots): beyond it each anchor
# keeps its first rows only, and the search says so in the log.
ROW_BUDGET = 2_000_000


@dataclass
class _Table:
    """Partial or complete combinations, grouped by anchor in ascending order."""

    anchor: IntArray
    picks: list[IntArray]
    truncated: BoolArray | None = None  # per anchor row: some combination was dropped

    def __len__(self) -> int:
        return len(self.anchor)

    def take(self, keep: BoolArray | IntArray) -> _Table:
        return _Table(self.anchor[keep], [p[keep] for p in self.picks], self.truncated)


def _sort_by_anchor(anchor: IntArray, picks: list[IntArray]) -> _Table:
    order = np.argsort(anchor, kind="stable")
    return _Table(anchor[order], [p[order] for p in picks])


class _Search:
    def __init__(self, state: IndexState, query: Query) -> None:
        self.state = state
        self.query = query
        n = self.n = state.size
        self.alive = state.alive[:n]
        self.root = state.root[:n]
        self.parent = state.parent[:n]
        self.has_trees = state.children > 0
        anchor_ok = self.alive & (self.parent < 0)
        for trait_id in query.root_required:
            anchor_ok &= state.any_trait([trait_id])
        if query.root_forbidden:
            anchor_ok &= ~state.any_trait(query.root_forbidden)
        self.anchor_ok = anchor_ok
        if query.sharing_trait is None:
            self.sharing = np.zeros(n, bool)
        else:
            self.sharing = state.any_trait([query.sharing_trait])
        self.order, _ = state.tree_order()
        self._share_anchors: dict[int, IntArray] = {}
        self._depth: int | None = None
        self.over_budget = False

    # -- building blocks -------------------------------------------------------------------

    def _rows_by_root(self, mask: BoolArray) -> IntArray:
        rows: IntArray = self.order[mask[self.order]]
        return rows

    def _anchors_of_sharing(self, row: int) -> IntArray:
        """Roots of every tree with a provider in an aggregate of sharing provider ``row``."""
        found = self._share_anchors.get(row)
        if found is None:
            members = self.state.aggregate_rows(self.state.row_aggs[row])
            found = np.unique(self.root[members])
            self._share_anchors[row] = found
        return found

    def _with_sharing(self, anchor: IntArray, rows: IntArray, shares: IntArray) -> _Table:
        """Add, for each sharing provider, one option per further anchor it can serve."""
        if not len(shares):
            return _Table(anchor, [rows])
        extra_a, extra_p = [anchor], [rows]
        for row in shares.tolist():
            anchors = self._anchors_of_sharing(row)
            anchors = anchors[anchors != self.root[row]]
            extra_a.append(anchors)
            extra_p.append(np.full(len(anchors), row, I64))
        return _sort_by_anchor(np.concatenate(extra_a), [np.concatenate(extra_p)])

    def _aggregates(self, uuids: frozenset[str]) -> BoolArray:
        ids = [self.state.agg_by_uuid[u] for u in uuids if u in self.state.agg_by_uuid]
        mask: BoolArray = self.state.in_any_aggregate(ids)
        return mask

    def _member_mask(self, need: Need) -> BoolArray | None:
        if not need.member_of:
            return None
        mask = np.ones(self.n, bool)
        for any_of in need.member_of:
            mask &= self._aggregates(any_of)
        return mask

    def _tree_root(self, need: Need) -> int | None:
        """Row of the root of ``in_tree`` (-1 when that provider does not exist)."""
        if need.in_tree is None:
            return None
        row = self.state.row_of_uuid.get(need.in_tree)
        return -1 if row is None else int(self.root[row])

    # -- options per group ------------------------------------------------------------------

    def granular_options(self, need: Need) -> _Table:
        state = self.state
        if need.resources:
            mask = np.ones(self.n, bool)
            for rc_id, _, amount in need.resources:
                mask &= state.resource_ok(rc_id, amount)
        elif need.required or need.member_of:
            mask = self.alive.copy()
        else:
            # Upstream: a resourceless group matches only through positive traits/aggregates.
            return _Table(_EMPTY, [_EMPTY])
        for any_of in need.required:
            mask &= state.any_trait(any_of)
        if need.forbidden:
            mask &= ~state.any_trait(need.forbidden)
        member = self._member_mask(need)
        if member is not None:
            mask &= member
        if need.forbidden_aggregates:
            mask &= ~self._aggregates(need.forbidden_aggregates)
        tree_root = self._tree_root(need)
        if tree_root == -1:
            return _Table(_EMPTY, [_EMPTY])
        # Upstream ignores in_tree for a resourceless group.
        if tree_root is not None and need.resources:
            mask &= self.root == tree_root
        rows = self._rows_by_root(mask)
        table = self._with_sharing(self.root[rows], rows, rows[self.sharing[rows]])
        return table.take(self.anchor_ok[table.anchor])

    def unsuffixed_options(self, need: Need) -> _Table:
        """Each class from any provider of the anchor's tree or a sharing provider; the
        traits asked for must be present among the providers used (collectively)."""
        state = self.state
        member = self._member_mask(need)
        bad = self._aggregates(need.forbidden_aggregates) if need.forbidden_aggregates else None
        forbidden = state.any_trait(need.forbidden) if need.forbidden else None
        tree_root = self._tree_root(need)
        if tree_root == -1:
            return _Table(_EMPTY, [_EMPTY] * len(need.resources))
        table: _Table | None = None
        for rc_id, _, amount in need.resources:
            mask = state.resource_ok(rc_id, amount)
            if tree_root is not None:
                mask &= self.root == tree_root
            if forbidden is not None:
                mask &= ~forbidden
            rows = self._rows_by_root(mask)
            shares = _EMPTY
            if tree_root is None:
                shares = rows[self.sharing[rows]]
                if member is not None:
                    shares = shares[member[shares]]
            part = self._with_sharing(self.root[rows], rows, shares)
            anchor, picked = part.anchor, part.picks[0]
            keep = self.anchor_ok[anchor]
            if member is not None:
                keep &= member[picked] | member[anchor]
            if bad is not None:
                keep &= ~bad[picked] & ~bad[anchor]
            part = part.take(keep)
            table = part if table is None else self._join(table, part)
            if not len(table):
                return _Table(_EMPTY, [_EMPTY] * len(need.resources))
        assert table is not None
        if not self.query.nested_aware and self.has_trees:
            table = table.take(self._one_per_tree(table.picks, range(len(table.picks))))
        if need.required:
            ok = np.ones(len(table), bool)
            for any_of in need.required:
                has = state.any_trait(any_of)
                found = np.zeros(len(table), bool)
                for picked in table.picks:
                    found |= has[picked]
                ok &= found
            table = table.take(ok)
        return table

    # -- combining --------------------------------------------------------------------------

    def _join(self, left: _Table, right: _Table) -> _Table:
        """Every left row with every right option of the same anchor (left order kept).

        A join that would exceed ROW_BUDGET rows keeps only each anchor's first rows (so
        much may be asked only of an absurdly combinatorial request without a limit)."""
        counts = np.bincount(right.anchor, minlength=self.n)
        starts = np.cumsum(counts) - counts
        per_left = counts[left.anchor]
        truncated = left.truncated
        if int(per_left.sum()) > ROW_BUDGET:
            anchors = int(np.count_nonzero(np.diff(left.anchor))) + 1
            allowed = max(1, ROW_BUDGET // anchors)
            room = np.clip(allowed - _ranks(left.anchor) * per_left, 0, per_left)
            truncated = np.zeros(self.n, bool) if truncated is None else truncated.copy()
            truncated[left.anchor[room < per_left]] = True
            per_left = room
            self.over_budget = True
        total = int(per_left.sum())
        rep = np.repeat(np.arange(len(left), dtype=I64), per_left)
        first_of_left = np.cumsum(per_left) - per_left
        within = np.arange(total, dtype=I64) - np.repeat(first_of_left, per_left)
        opt = np.repeat(starts[left.anchor], per_left) + within
        return _Table(
            left.anchor[rep],
            [p[rep] for p in left.picks] + [p[opt] for p in right.picks],
            truncated,
        )

    def _truncate(self, table: _Table, cap: int) -> _Table:
        """Keep each anchor's first ``cap`` rows, remembering which anchors lost some."""
        if not len(table):
            return table
        anchor = table.anchor
        over = _ranks(anchor) >= cap
        if not over.any():
            return table
        truncated = table.truncated
        if truncated is None:
            truncated = np.zeros(self.n, bool)
        truncated = truncated.copy()
        truncated[anchor[over]] = True
        kept = table.take(~over)
        kept.truncated = truncated
        return kept

    def _one_per_tree(self, picks: Sequence[IntArray], slots: Sequence[int]) -> BoolArray:
        ok = np.ones(len(picks[0]) if picks else 0, bool)
        slots = list(slots)
        for x, i in enumerate(slots):
            for j in slots[x + 1 :]:
                pi, pj = picks[i], picks[j]
                ok &= (pi == pj) | (self.root[pi] != self.root[pj])
        return ok

    def _chain(self, rows: IntArray) -> list[IntArray]:
        """``rows`` and their ancestors, level by level (-1 above the root)."""
        if self._depth is None:
            self._depth = self.state.depth()
        chain = [rows]
        current = rows
        for _ in range(self._depth):
            current = np.where(current >= 0, self.parent[np.maximum(current, 0)], -1)
            chain.append(current)
        return chain

    def _same_subtree(self, picks: list[IntArray]) -> BoolArray:
        """Some pick is an ancestor (or itself) of every other pick."""
        chains = [self._chain(p) for p in picks]
        result = np.zeros(len(picks[0]), bool)
        for i, top in enumerate(picks):
            ok = np.ones(len(top), bool)
            for j, chain in enumerate(chains):
                if i != j:
                    below = np.zeros(len(top), bool)
                    for level in chain:
                        below |= level == top
                    ok &= below
            result |= ok
        return result

    def _symmetry_classes(self, rows: IntArray) -> IntArray:
        """Interchangeable providers get the same class: leaves with the same parent and the
        same inventories, usage, traits and aggregates. Swapping two of them between two
        identical groups changes neither the allocation nor what the mapping means."""
        state = self.state
        n = self.n
        has_child = np.zeros(n, bool)
        parents = self.parent[self.alive]
        has_child[parents[parents >= 0]] = True
        unique = (self.parent[rows] < 0) | has_child[rows]
        aggregate_sets: dict[frozenset[int], int] = {}
        columns = [
            np.where(unique, -1 - rows, self.parent[rows]),
            *state.inv[:, rows].astype(I64),
            *state.total[:, rows],
            *state.reserved[:, rows],
            *state.min_unit[:, rows],
            *state.max_unit[:, rows],
            *state.step[:, rows],
            *state.ratio[:, rows].view(I64),
            *state.used[:, rows],
            *state.traits[:, rows].view(I64),
            np.fromiter(
                (
                    aggregate_sets.setdefault(state.row_aggs[r], len(aggregate_sets))
                    for r in rows.tolist()
                ),
                I64,
                len(rows),
            ),
        ]
        _, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
        classes = np.full(n, -1, I64)
        classes[rows] = inverse.ravel()
        return classes

    def combine(self, options: list[_Table], cap: int | None) -> tuple[list[Slot], _Table]:
        query = self.query
        needs = query.needs
        slots: list[Slot] = []
        slot_of_group: list[list[int]] = []
        for g, need in enumerate(needs):
            cols = [self.state.rc_col[rc_id] for rc_id, _, _ in need.resources]
            amounts = [amount for _, _, amount in need.resources]
            names = [name for _, name, _ in need.resources]
            if need.granular:
                slot_of_group.append([len(slots)])
                slots.append(Slot(g, tuple(cols), tuple(amounts), tuple(names)))
            else:
                slot_of_group.append(list(range(len(slots), len(slots) + len(cols))))
                slots.extend(
                    Slot(g, (c,), (a,), (name,))
                    for c, a, name in zip(cols, amounts, names, strict=True)
                )

        # Identical granular groups (each with the earlier ones like it), and the classes of
        # the providers they could pick.
        identical: dict[int, list[int]] = {}
        alike: dict[tuple[object, ...], list[int]] = {}
        for g, need in enumerate(needs):
            if need.granular and query.distinct:
                key = (
                    need.resources,
                    need.required,
                    need.forbidden,
                    need.member_of,
                    need.forbidden_aggregates,
                    need.in_tree,
                    tuple(need.suffix in s for s in query.same_subtrees),
                )
                before = alike.setdefault(key, [])
                if before:
                    identical[g] = list(before)
                before.append(g)
        classes = None
        if identical:
            rows = np.unique(
                np.concatenate([options[h].picks[0] for g in identical for h in [g, *identical[g]]])
            )
            classes = self._symmetry_classes(rows)

        table = options[0]
        if cap is not None:
            table = self._truncate(table, cap)
        joined = [0]
        isolate = query.group_policy == "isolate"
        one_per_tree = not query.nested_aware and self.has_trees
        for g in range(1, len(needs)):
            table = self._join(table, options[g])
            picks = table.picks
            ok = np.ones(len(table), bool)
            earlier = [s for h in joined for s in slot_of_group[h]]
            for j in slot_of_group[g]:
                pj = picks[j]
                for col, amount in zip(slots[j].cols, slots[j].amounts, strict=True):
                    sharing_col = [
                        (i, slots[i].amounts[slots[i].cols.index(col)])
                        for i in earlier
                        if col in slots[i].cols
                    ]
                    if not sharing_col:
                        continue
                    used = np.full(len(table), amount, I64)
                    for i, other in sharing_col:
                        used += np.where(picks[i] == pj, other, 0)
                    ok &= used <= self.state.free[col, pj]
                    ok &= used <= self.state.max_unit[col, pj]
                if isolate and needs[g].granular:
                    for h in joined:
                        if needs[h].granular:
                            ok &= picks[slot_of_group[h][0]] != pj
                if classes is not None:
                    for h in identical.get(g, []):
                        ph = picks[slot_of_group[h][0]]
                        ok &= (classes[ph] != classes[pj]) | (pj >= ph)
                if one_per_tree and slots[j].cols:
                    for i in earlier:
                        if slots[i].cols:
                            pi = picks[i]
                            ok &= (pi == pj) | (self.root[pi] != self.root[pj])
            joined.append(g)
            done = {needs[h].suffix for h in joined}
            for subtree in query.same_subtrees:
                if needs[g].suffix in subtree and subtree <= done:
                    members = [
                        picks[slot_of_group[h][0]] for h in joined if needs[h].suffix in subtree
                    ]
                    ok &= self._same_subtree(members)
            table = table.take(ok)
            if cap is not None:
                table = self._truncate(table, cap)
            if not len(table):
                break
        return slots, table

    def run(self) -> Found:
        query = self.query
        options = [
            self.granular_options(need) if need.granular else self.unsuffixed_options(need)
            for need in query.needs
        ]
        # Only anchors every group can use matter.
        present = np.ones(self.n, bool)
        for table in options:
            here = np.zeros(self.n, bool)
            here[table.anchor] = True
            present &= here
        options = [t.take(present[t.anchor]) for t in options]
        if not present.any():
            return Found([], _EMPTY, [])
        limit = query.limit
        cap: int | None = None
        # Before 1.29 the summaries cover every candidate of the returned trees, so those
        # microversions enumerate everything.
        if limit is not None and (query.nested_aware or not self.has_trees):
            cap = max(2, 2 * math.ceil(limit / int(present.sum())))
        while True:
            slots, table = self.combine(options, cap)
            table = self._dedupe_shared(table)
            chosen, enough = self._select(table, limit)
            if enough or cap is None or self.over_budget:
                break
            cap *= 4
        if self.over_budget:
            LOG.warning(
                "allocation candidates: the request has too many combinations to enumerate; "
                "each tree contributed only its first ones (%d candidates returned). Use a "
                "limit or set max_allocation_candidates.",
                len(chosen),
            )
        if not len(table):
            return Found(slots, _EMPTY, [_EMPTY] * len(slots))
        return Found(
            slots,
            table.anchor[chosen],
            [p[chosen] for p in table.picks],
            all_picks=table.picks,
        )

    def _dedupe_shared(self, table: _Table) -> _Table:
        """A combination of sharing providers only is found under every anchor they serve;
        keep it once."""
        if not len(table) or not self.sharing.any():
            return table
        only_shared = np.ones(len(table), bool)
        for picked in table.picks:
            only_shared &= self.sharing[picked]
        if not only_shared.any():
            return table
        idx = np.flatnonzero(only_shared)
        stacked = np.stack([p[idx] for p in table.picks], axis=1)
        _, first = np.unique(stacked, axis=0, return_index=True)
        drop = np.ones(len(idx), bool)
        drop[first] = False
        keep = np.ones(len(table), bool)
        keep[idx[drop]] = False
        return table.take(keep)

    def _select(self, table: _Table, limit: int | None) -> tuple[IntArray, bool]:
        """Which rows to return, in order: round-robin over anchors (the first combination
        of every anchor, then the second, ...), anchors in row order or shuffled.

        ``enough`` is False when an anchor that lost combinations to the per-anchor allowance
        would have had to contribute more than it kept."""
        n_rows = len(table)
        if not n_rows:
            return _EMPTY, table.truncated is None or not table.truncated.any()
        anchor = table.anchor
        boundary = np.empty(n_rows, bool)
        boundary[0] = True
        np.not_equal(anchor[1:], anchor[:-1], out=boundary[1:])
        starts = np.flatnonzero(boundary)
        block = np.cumsum(boundary) - 1
        rank = np.arange(n_rows, dtype=I64) - starts[block]
        counts = np.diff(np.append(starts, n_rows))
        rng = np.random.default_rng() if self.query.randomize else None
        if rng is not None:
            position = rng.permutation(len(starts))[block]
            rank = _shuffled_ranks(rank, block, rng)
        else:
            position = block
        block_position = position[starts]
        if limit is None or (limit >= n_rows and table.truncated is None):
            if rng is None and not rank.any():
                return np.arange(n_rows, dtype=I64), True
            return np.lexsort((position, rank)), True
        chosen = np.lexsort((position, rank))[:limit]
        if table.truncated is None:
            return chosen, True
        # The exact answer would also take an anchor's next (dropped) combination if that
        # came before the last one chosen. An anchor that lost all of its combinations might
        # have had some: ask for a larger allowance too.
        truncated_blocks = table.truncated[anchor[starts]]
        if len(chosen) < limit:
            return chosen, not table.truncated.any()
        last = chosen[-1]
        short = truncated_blocks & (
            (counts < rank[last]) | ((counts == rank[last]) & (block_position < position[last]))
        )
        lost = table.truncated.copy()
        lost[anchor[starts]] = False
        return chosen, not (short.any() or lost.any())


def _ranks(anchor: IntArray) -> IntArray:
    """Position of each row within its anchor's block (rows are grouped by anchor)."""
    if not len(anchor):
        return anchor
    boundary = np.empty(len(anchor), bool)
    boundary[0] = True
    np.not_equal(anchor[1:], anchor[:-1], out=boundary[1:])
    starts = np.flatnonzero(boundary)
    ranks: IntArray = np.arange(len(anchor), dtype=I64) - starts[np.cumsum(boundary) - 1]
    return ranks


def _shuffled_ranks(rank: IntArray, block: IntArray, rng: np.random.Generator) -> IntArray:
    """A random order of the combinations within each anchor."""
    keys = rng.random(len(rank))
    order = np.lexsort((keys, block))
    shuffled = np.empty_like(rank)
    shuffled[order] = rank
    return shuffled


def search(state: IndexState, query: Query) -> Found:
    """Run ``query`` against ``state`` (the caller holds the index lock)."""
    if not query.needs:
        return Found([], _EMPTY, [])
    return _Search(state, query).run()
