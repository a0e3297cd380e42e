"""The answer to one candidate request, detached from the index.

``CandidateSet`` keeps the candidates as arrays over a compact list of the providers
involved (uuids copied out of the index while its lock was held), so building it costs
array operations only; ``requests()`` and ``summaries()`` materialize plain records, and the
HTTP layer serializes the arrays directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from allotment.placement.candidates.engine import Found, Query
from allotment.placement.index.capacity import I64, IndexState, IntArray
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
    uuids: tuple[str, ...]  # compact provider index -> uuid
    summary: IntArray  # compact indices of the providers to summarize
    summary_parent: IntArray  # per summarized provider: compact index of the parent, or -1
    summary_root: IntArray
    class_names: tuple[str, ...]  # column names of the arrays below
    has_inventory: npt.NDArray[np.bool_]  # (classes, summarized providers)
    capacity: IntArray
    used: IntArray
    traits: tuple[tuple[str, ...], ...]  # per summarized provider
    requested: frozenset[str]  # every class any group asked for

    def __len__(self) -> int:
        return int(self.picks.shape[1])

    def allocations(self, candidate: int) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for slot, provider in zip(self.slots, self.picks[:, candidate].tolist(), strict=True):
            if slot.resources:
                amounts = out.setdefault(self.uuids[provider], {})
                for name, amount in slot.resources:
                    amounts[name] = amounts.get(name, 0) + amount
        return out

    def mappings(self, candidate: int) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {suffix: [] for suffix in self.suffixes}
        for slot, provider in zip(self.slots, self.picks[:, candidate].tolist(), strict=True):
            found = out[slot.suffix]
            uuid = self.uuids[provider]
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
                uuid=self.uuids[provider],
                root_uuid=self.uuids[int(self.summary_root[i])],
                parent_uuid=None if parent < 0 else self.uuids[parent],
                resources={
                    name: (int(self.capacity[c, i]), int(self.used[c, i]))
                    for c, name in enumerate(self.class_names)
                    if self.has_inventory[c, i]
                },
                traits=self.traits[i],
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


def _trait_names(
    state: IndexState, rows: IntArray, trait_name: Callable[[int], str]
) -> list[tuple[str, ...]]:
    """Trait names of each row, in trait id order; decoded once per distinct trait set."""
    if not len(rows):
        return []
    words = state.traits[:, rows]
    distinct, inverse = np.unique(words, axis=1, return_inverse=True)
    decoded = []
    for k in range(distinct.shape[1]):
        ids = []
        for w in range(distinct.shape[0]):
            value = int(distinct[w, k])
            while value:
                low = value & -value
                ids.append(state.bit_trait[w * 64 + low.bit_length() - 1])
                value ^= low
        decoded.append(tuple(trait_name(t) for t in sorted(ids)))
    return [decoded[k] for k in inverse.ravel().tolist()]


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
    count = len(found.anchor)
    if not count:
        return _empty(suffixes, slots, requested)
    picks = np.stack(found.picks)
    resourceful = [i for i, slot in enumerate(found.slots) if slot.cols]
    used_rows = picks[resourceful].ravel() if resourceful else np.zeros(0, I64)
    roots = np.unique(state.root[used_rows])
    if query.nested_aware or not state.children:
        summary_rows = _tree_members(state, roots)
    else:
        # Before 1.29 only providers that take part in some candidate are summarized.
        every = np.concatenate([found.all_picks[i] for i in resourceful])
        every = np.unique(every)
        summary_rows = every[np.isin(state.root[every], roots)]
    parents = state.parent[summary_rows]
    involved = np.unique(
        np.concatenate(
            [picks.ravel(), summary_rows, state.root[summary_rows], parents[parents >= 0]]
        )
    )
    uuids = tuple(state.uuids[involved].tolist())
    compact = np.searchsorted
    summary_parent = np.where(parents >= 0, compact(involved, np.maximum(parents, 0)), -1)
    cols = np.flatnonzero(state.inv[:, summary_rows].any(axis=1))
    return CandidateSet(
        suffixes=suffixes,
        slots=slots,
        picks=compact(involved, picks),
        uuids=uuids,
        summary=compact(involved, summary_rows),
        summary_parent=summary_parent,
        summary_root=compact(involved, state.root[summary_rows]),
        class_names=tuple(class_name(state.col_rc[c]) for c in cols.tolist()),
        has_inventory=state.inv[cols][:, summary_rows],
        capacity=state.capacity[cols][:, summary_rows],
        used=state.used[cols][:, summary_rows],
        traits=tuple(_trait_names(state, summary_rows, trait_name)),
        requested=requested,
    )


def _empty(
    suffixes: tuple[str, ...], slots: Sequence[SlotInfo], requested: frozenset[str]
) -> CandidateSet:
    none = np.zeros(0, I64)
    return CandidateSet(
        suffixes=suffixes,
        slots=tuple(slots),
        picks=np.zeros((len(slots), 0), I64),
        uuids=(),
        summary=none,
        summary_parent=none,
        summary_root=none,
        class_names=(),
        has_inventory=np.zeros((0, 0), bool),
        capacity=np.zeros((0, 0), I64),
        used=np.zeros((0, 0), I64),
        traits=(),
        requested=requested,
    )
