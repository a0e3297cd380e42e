"""The answer to one candidate request, detached from the index.

``CandidateSet`` keeps the candidates as arrays over a compact list of the providers
involved (uuids copied out of the index while its lock was held), so building it costs
array operations only; ``requests()`` and ``summaries()`` materialize plain records, and the
HTTP layer serializes the arrays directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from allotment.placement.candidates.engine import Found, Query
from allotment.placement.index.capacity import I64, IndexState, IntArray
from allotment.placement.index.rowcache import RowCache
from allotment.placement.model import AllocationRequest, ProviderSummary


@dataclass(frozen=True, slots=True)
class SlotInfo:
    suffix: str
    resources: tuple[tuple[str, int], ...]  # (class name, amount)


@dataclass(frozen=True)
class CandidateSet:
    suffixes: tuple[str, ...]  # request groups, in request order
    slots: tuple[SlotInfo, ...]
    picks: IntArray  # (slots, candidates): compact provider index
    uuids: npt.NDArray[np.object_]  # compact provider index -> uuid
    summary: IntArray  # compact indices of the providers to summarize
    summary_parent: IntArray  # per summarized provider: compact index of the parent, or -1
    summary_root: IntArray
    class_names: tuple[str, ...]  # column names of the arrays below
    has_inventory: npt.NDArray[np.bool_]  # (classes, summarized providers)
    capacity: IntArray
    used: IntArray
    trait_sets: tuple[tuple[str, ...], ...]  # distinct trait sets, names in trait id order
    trait_set: IntArray  # per summarized provider: index into trait_sets
    requested: frozenset[str]  # every class any group asked for
    # Per summarized provider: its index row and that row's version, and the index's
    # caches of per-row values by name (for rendering summaries once per row version).
    summary_rows: IntArray = field(default_factory=lambda: np.zeros(0, I64))
    summary_versions: IntArray = field(default_factory=lambda: np.zeros(0, I64))
    row_cache: Callable[[str], RowCache] | None = None

    def __len__(self) -> int:
        return int(self.picks.shape[1])

    def allocations(self, candidate: int) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for slot, provider in zip(self.slots, self.picks[:, candidate].tolist(), strict=True):
            if slot.resources:
                amounts = out.setdefault(str(self.uuids[provider]), {})
                for name, amount in slot.resources:
                    amounts[name] = amounts.get(name, 0) + amount
        return out

    def mappings(self, candidate: int) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {suffix: [] for suffix in self.suffixes}
        for slot, provider in zip(self.slots, self.picks[:, candidate].tolist(), strict=True):
            found = out[slot.suffix]
            uuid = str(self.uuids[provider])
            if uuid not in found:
                found.append(uuid)
        return out

    def requests(self) -> Iterator[AllocationRequest]:
        for candidate in range(len(self)):
            mappings = {k: tuple(v) for k, v in self.mappings(candidate).items()}
            yield AllocationRequest(self.allocations(candidate), mappings)

    def summaries(self) -> Iterator[ProviderSummary]:
        for i, provider in enumerate(self.summary.tolist()):
            parent = int(self.summary_parent[i])
            yield ProviderSummary(
                uuid=str(self.uuids[provider]),
                root_uuid=str(self.uuids[int(self.summary_root[i])]),
                parent_uuid=None if parent < 0 else str(self.uuids[parent]),
                resources={
                    name: (int(self.capacity[c, i]), int(self.used[c, i]))
                    for c, name in enumerate(self.class_names)
                    if self.has_inventory[c, i]
                },
                traits=self.trait_sets[int(self.trait_set[i])],
            )


def _tree_members(state: IndexState, roots: IntArray) -> IntArray:
    order, start = state.tree_order()
    lengths = start[roots + 1] - start[roots]
    first = np.repeat(start[roots], lengths)
    within = np.arange(int(lengths.sum()), dtype=I64) - np.repeat(
        np.cumsum(lengths) - lengths, lengths
    )
    members: IntArray = order[first + within]
    return members


def _rows_marked(n: int, *parts: IntArray) -> IntArray:
    """The distinct rows in ``parts``, ascending (a mask is cheaper than sorting)."""
    mark = np.zeros(n, bool)
    for part in parts:
        mark[part] = True
    rows: IntArray = np.flatnonzero(mark)
    return rows


def _trait_sets(
    state: IndexState, rows: IntArray, trait_name: Callable[[int], str]
) -> tuple[tuple[tuple[str, ...], ...], IntArray]:
    """The distinct trait sets of ``rows`` (names in trait id order) and each row's set."""
    ids = state.trait_set[rows]
    used = np.flatnonzero(np.bincount(ids, minlength=len(state.trait_sets)))
    local = np.zeros(len(state.trait_sets), I64)
    local[used] = np.arange(len(used), dtype=I64)
    names = tuple(tuple(trait_name(t) for t in state.trait_sets[k]) for k in used.tolist())
    return names, local[ids]


def collect(
    state: IndexState,
    query: Query,
    found: Found,
    *,
    class_name: Callable[[int], str],
    trait_name: Callable[[int], str],
) -> CandidateSet:
    """Copy what the answer needs out of the index (call with the index lock held)."""
    suffixes = tuple(need.suffix for need in query.needs)
    slots = tuple(
        SlotInfo(query.needs[slot.group].suffix, tuple(zip(slot.names, slot.amounts, strict=True)))
        for slot in found.slots
    )
    requested = frozenset(name for need in query.needs for _, name, _ in need.resources)
    if not len(found.anchor):
        return _empty(suffixes, slots, requested)
    n = state.size
    picks = np.stack(found.picks)
    resourceful = [i for i, slot in enumerate(found.slots) if slot.cols]
    used_rows = picks[resourceful].ravel() if resourceful else np.zeros(0, I64)
    roots = _rows_marked(n, state.root[used_rows])
    if query.nested_aware or not state.children:
        summary_rows = _tree_members(state, roots)
    else:
        # Before 1.29 only providers that take part in some candidate are summarized.
        every = _rows_marked(n, *(found.all_picks[i] for i in resourceful))
        in_roots = np.zeros(n, bool)
        in_roots[roots] = True
        summary_rows = every[in_roots[state.root[every]]]
    parents = state.parent[summary_rows]
    involved = _rows_marked(
        n, picks.ravel(), summary_rows, state.root[summary_rows], parents[parents >= 0]
    )
    compact = np.full(n, -1, I64)
    compact[involved] = np.arange(len(involved), dtype=I64)
    cols = np.flatnonzero(state.inv[:, summary_rows].any(axis=1))
    grid = (cols[:, None], summary_rows[None, :])
    trait_sets, trait_set = _trait_sets(state, summary_rows, trait_name)
    # Summaries name classes: renaming one must not reuse fragments holding the old name.
    names = tuple(class_name(rc) for rc in state.col_rc)
    return CandidateSet(
        suffixes=suffixes,
        slots=slots,
        picks=compact[picks],
        uuids=state.uuids[involved],
        summary=compact[summary_rows],
        summary_parent=np.where(parents >= 0, compact[np.maximum(parents, 0)], -1),
        summary_root=compact[state.root[summary_rows]],
        class_names=tuple(class_name(state.col_rc[c]) for c in cols.tolist()),
        has_inventory=state.inv[grid],
        capacity=state.capacity[grid],
        used=state.used[grid],
        trait_sets=trait_sets,
        trait_set=trait_set,
        requested=requested,
        summary_rows=summary_rows,
        summary_versions=state.version[summary_rows],
        row_cache=lambda variant: state.row_cache((variant, names)),
    )


def _empty(
    suffixes: tuple[str, ...], slots: Sequence[SlotInfo], requested: frozenset[str]
) -> CandidateSet:
    none = np.zeros(0, I64)
    return CandidateSet(
        suffixes=suffixes,
        slots=tuple(slots),
        picks=np.zeros((len(slots), 0), I64),
        uuids=np.zeros(0, object),
        summary=none,
        summary_parent=none,
        summary_root=none,
        class_names=(),
        has_inventory=np.zeros((0, 0), bool),
        capacity=np.zeros((0, 0), I64),
        used=np.zeros((0, 0), I64),
        trait_sets=(),
        trait_set=none,
        requested=requested,
    )
