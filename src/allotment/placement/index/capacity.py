"""The per-process capacity index: every provider's inventories, usage, traits, aggregates
and tree links as NumPy columns, so candidate searches are array scans instead of SQL.

Layout: one row per provider (rows are reused after deletes); resource classes are columns of
``(classes, rows)`` arrays, each class contiguous, because a search scans one class at a
time. Traits are bits of ``(words, rows)`` uint64 arrays. Aggregates are an inverted index
(aggregate -> rows), since there may be many aggregates with few members each.

An ``IndexState`` is only read or changed under its owner's lock (``CapacityIndex.lock``).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from allotment.placement.index.loader import Facts, IndexRead
from allotment.placement.index.rowcache import RowCache, next_version

I64 = np.int64
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_NO_AGGS: frozenset[int] = frozenset()


def _grown(array: Any, size: int, axis: int, fill: object) -> Any:
    """``array`` padded with ``fill`` to ``size`` along ``axis`` (itself if already as big)."""
    shape = list(array.shape)
    extra = size - shape[axis]
    if extra <= 0:
        return array
    shape[axis] = extra
    pad = np.full(shape, fill, dtype=array.dtype)
    return np.concatenate([array, pad], axis=axis)


class IndexState:
    """All providers as arrays. Not thread-safe by itself."""

    _ROW_ARRAYS = ("ids", "alive", "root", "parent", "uuids", "trait_set", "seen", "version")
    _COL_ARRAYS = (
        "inv",
        "total",
        "reserved",
        "min_unit",
        "max_unit",
        "step",
        "ratio",
        "used",
        "capacity",
        "free",
    )

    def __init__(self, rows: int = 64, cols: int = 4, words: int = 1) -> None:
        self.size = 0  # high-water mark: rows [0, size) have been used
        self.ids: IntArray = np.zeros(rows, I64)
        self.alive: BoolArray = np.zeros(rows, bool)
        self.root: IntArray = np.full(rows, -1, I64)
        self.parent: IntArray = np.full(rows, -1, I64)
        self.uuids: npt.NDArray[np.object_] = np.full(rows, None, object)
        # Change-log position of the snapshot each row was last read from.
        self.seen: IntArray = np.zeros(rows, I64)
        # Changes whenever anything about the provider in the row does (see rowcache).
        self.version: IntArray = np.zeros(rows, I64)
        self._row_caches: dict[object, RowCache] = {}
        self._row_caches_lock = threading.Lock()
        self.row_of_id: dict[int, int] = {}
        self.row_of_uuid: dict[str, int] = {}
        self._free_rows: list[int] = []

        self.rc_col: dict[int, int] = {}
        self.col_rc: list[int] = []
        self.inv: BoolArray = np.zeros((cols, rows), bool)
        self.total: IntArray = np.zeros((cols, rows), I64)
        self.reserved: IntArray = np.zeros((cols, rows), I64)
        self.min_unit: IntArray = np.zeros((cols, rows), I64)
        self.max_unit: IntArray = np.zeros((cols, rows), I64)
        self.step: IntArray = np.ones((cols, rows), I64)
        self.ratio: npt.NDArray[np.float64] = np.zeros((cols, rows), np.float64)
        self.used: IntArray = np.zeros((cols, rows), I64)
        # Derived: int((total - reserved) * ratio), and what is left of it.
        self.capacity: IntArray = np.zeros((cols, rows), I64)
        self.free: IntArray = np.zeros((cols, rows), I64)

        self.trait_bit: dict[int, int] = {}
        self.bit_trait: list[int] = []
        self.traits: npt.NDArray[np.uint64] = np.zeros((words, rows), np.uint64)
        # Providers share few distinct trait sets: each row's set as an id into trait_sets
        # (trait ids, ascending), so summaries decode each set once.
        self.trait_set: IntArray = np.zeros(rows, I64)
        self.trait_sets: list[tuple[int, ...]] = [()]
        self._trait_set_ids: dict[tuple[int, ...], int] = {(): 0}

        self.agg_rows: dict[int, set[int]] = {}
        self.row_aggs: list[frozenset[int]] = [_NO_AGGS] * rows
        self.agg_by_uuid: dict[str, int] = {}
        self.agg_uuid: dict[int, str] = {}
        self._agg_arrays: dict[int, IntArray] = {}

        self.children = 0  # alive providers that have a parent
        self.tree_version = 0  # bumped when tree links change
        self._tree_cache: tuple[int, IntArray, IntArray] | None = None

    # -- shape ------------------------------------------------------------------------------

    @property
    def rows(self) -> int:
        return len(self.ids)

    def _ensure_rows(self, needed: int) -> None:
        if needed <= self.rows:
            return
        size = max(needed, 2 * self.rows)
        fills: dict[str, object] = {"root": -1, "parent": -1, "uuids": None}
        for name in self._ROW_ARRAYS:
            setattr(self, name, _grown(getattr(self, name), size, 0, fills.get(name, 0)))
        for name in self._COL_ARRAYS:
            setattr(self, name, _grown(getattr(self, name), size, 1, 1 if name == "step" else 0))
        self.traits = _grown(self.traits, size, 1, 0)
        self.row_aggs.extend([_NO_AGGS] * (size - len(self.row_aggs)))

    def column(self, rc_id: int) -> int:
        """The column of a resource class, added on first use."""
        col = self.rc_col.get(rc_id)
        if col is None:
            col = len(self.col_rc)
            if col >= self.inv.shape[0]:
                for name in self._COL_ARRAYS:
                    fill = 1 if name == "step" else 0
                    setattr(self, name, _grown(getattr(self, name), 2 * (col + 1), 0, fill))
            self.rc_col[rc_id] = col
            self.col_rc.append(rc_id)
        return col

    def bit(self, trait_id: int) -> int:
        """The bit of a trait, added on first use."""
        found = self.trait_bit.get(trait_id)
        if found is None:
            found = len(self.bit_trait)
            if found // 64 >= self.traits.shape[0]:
                self.traits = _grown(self.traits, 2 * (found // 64 + 1), 0, 0)
            self.trait_bit[trait_id] = found
            self.bit_trait.append(trait_id)
        return found

    # -- queries ----------------------------------------------------------------------------

    def resource_ok(self, rc_id: int, amount: int) -> BoolArray:
        """Providers that can give ``amount`` of a class now: inventory, capacity left,
        min_unit, max_unit and step_size."""
        col = self.rc_col.get(rc_id)
        n = self.size
        if col is None:
            return np.zeros(n, bool)
        ok = self.inv[col, :n] & (self.free[col, :n] >= amount)
        ok &= self.min_unit[col, :n] <= amount
        ok &= self.max_unit[col, :n] >= amount
        ok &= (amount % self.step[col, :n]) == 0
        return ok

    def any_trait(self, trait_ids: Iterable[int]) -> BoolArray:
        """Providers having at least one of the traits."""
        masks: dict[int, int] = {}
        for trait_id in trait_ids:
            bit = self.trait_bit.get(trait_id)
            if bit is not None:
                masks[bit // 64] = masks.get(bit // 64, 0) | (1 << (bit % 64))
        n = self.size
        out = np.zeros(n, bool)
        for word, mask in masks.items():
            out |= (self.traits[word, :n] & np.uint64(mask)) != 0
        return out

    def aggregate_rows(self, agg_ids: Iterable[int]) -> IntArray:
        """Rows of the providers in any of the aggregates (sorted, unique)."""
        parts = []
        for agg_id in agg_ids:
            cached = self._agg_arrays.get(agg_id)
            if cached is None:
                members = self.agg_rows.get(agg_id, set())
                cached = np.fromiter(sorted(members), I64, len(members))
                self._agg_arrays[agg_id] = cached
            parts.append(cached)
        if not parts:
            return np.zeros(0, I64)
        if len(parts) == 1:
            return parts[0]
        return np.unique(np.concatenate(parts))

    def in_any_aggregate(self, agg_ids: Iterable[int]) -> BoolArray:
        out = np.zeros(self.size, bool)
        out[self.aggregate_rows(agg_ids)] = True
        return out

    def _trait_set_id(self, trait_ids: tuple[int, ...]) -> int:
        found = self._trait_set_ids.get(trait_ids)
        if found is None:
            found = len(self.trait_sets)
            self.trait_sets.append(trait_ids)
            self._trait_set_ids[trait_ids] = found
        return found

    def tree_order(self) -> tuple[IntArray, IntArray]:
        """Alive rows sorted by root row, and where each root's block starts.

        ``order[start[r]:start[r + 1]]`` are the rows of the tree rooted at row ``r``.
        """
        cached = self._tree_cache
        if cached is None or cached[0] != self.tree_version:
            n = self.size
            alive = np.flatnonzero(self.alive[:n])
            order = alive[np.argsort(self.root[alive], kind="stable")]
            counts = np.bincount(self.root[alive], minlength=n)
            start = np.zeros(n + 1, I64)
            np.cumsum(counts, out=start[1:])
            cached = (self.tree_version, order, start)
            self._tree_cache = cached
        return cached[1], cached[2]

    def depth(self) -> int:
        """Edges on the longest path from a root (0 when there are no trees)."""
        if not self.children:
            return 0
        current = self.parent[: self.size][self.alive[: self.size]]
        levels = 0
        while True:
            current = current[current >= 0]
            if not len(current):
                return levels
            levels += 1
            current = self.parent[current]

    # -- changes ----------------------------------------------------------------------------

    def row_cache(self, key: object) -> RowCache:
        """The cache of per-row values named ``key`` (made on first use; dropped with the
        state, so a rebuilt index starts with empty caches). Safe without the index lock."""
        with self._row_caches_lock:
            cache = self._row_caches.get(key)
            if cache is None:
                if len(self._row_caches) >= 8:  # keys naming e.g. renamed classes go stale
                    self._row_caches.clear()
                cache = self._row_caches[key] = RowCache()
            return cache

    def _row_for(self, provider_id: int) -> int:
        row = self.row_of_id.get(provider_id)
        if row is None:
            if self._free_rows:
                row = self._free_rows.pop()
            else:
                row = self.size
                self._ensure_rows(row + 1)
                self.size += 1
            self.row_of_id[provider_id] = row
            self.ids[row] = provider_id
            self.alive[row] = True
        return row

    def _clear(self, row: int) -> None:
        self.inv[:, row] = False
        self.used[:, row] = 0
        self.capacity[:, row] = 0
        self.free[:, row] = 0
        self.traits[:, row] = 0
        self.trait_set[row] = 0
        for agg_id in self.row_aggs[row]:
            self.agg_rows[agg_id].discard(row)
            self._agg_arrays.pop(agg_id, None)
        self.row_aggs[row] = _NO_AGGS

    def _remove(self, provider_id: int) -> None:
        row = self.row_of_id.pop(provider_id)
        self._clear(row)
        if self.parent[row] >= 0:
            self.children -= 1
        self.row_of_uuid.pop(str(self.uuids[row]), None)
        self.alive[row] = False
        self.ids[row] = 0
        self.root[row] = -1
        self.parent[row] = -1
        self.uuids[row] = None
        self.version[row] = next_version()
        self._free_rows.append(row)

    def apply(self, facts: Facts, provider_ids: Collection[int]) -> None:
        """Make the rows of ``provider_ids`` (and of any provider in ``facts``) match
        ``facts``; a provider asked for but absent from ``facts`` was deleted."""
        present = {p[0]: p for p in facts.providers}
        tree_changed = False
        for provider_id in provider_ids:
            if provider_id not in present and provider_id in self.row_of_id:
                self._remove(provider_id)
                tree_changed = True
        rows = {pid: self._row_for(pid) for pid in present}
        for pid, provider_uuid, root_id, parent_id in present.values():
            row = rows[pid]
            self._clear(row)
            old_uuid = self.uuids[row]
            if old_uuid != provider_uuid:
                if old_uuid is not None:
                    self.row_of_uuid.pop(str(old_uuid), None)
                self.uuids[row] = provider_uuid
                self.row_of_uuid[provider_uuid] = row
            root_row = self.row_of_id[root_id]
            parent_row = -1 if parent_id is None else self.row_of_id[parent_id]
            if self.root[row] != root_row or self.parent[row] != parent_row:
                self.children += int(parent_row >= 0) - int(self.parent[row] >= 0)
                self.root[row] = root_row
                self.parent[row] = parent_row
                tree_changed = True
        for pid, rc_id, total, reserved, min_unit, max_unit, step, ratio in facts.inventories:
            row, col = rows[pid], self.column(rc_id)
            self.inv[col, row] = True
            self.total[col, row] = total
            self.reserved[col, row] = reserved
            self.min_unit[col, row] = min_unit
            self.max_unit[col, row] = max_unit
            self.step[col, row] = max(step, 1)
            self.ratio[col, row] = ratio
        for pid, rc_id, used in facts.usages:
            self.used[self.column(rc_id), rows[pid]] = used
        trait_ids: dict[int, list[int]] = {}
        for pid, trait_id in facts.traits:
            bit = self.bit(trait_id)
            self.traits[bit // 64, rows[pid]] |= np.uint64(1 << (bit % 64))
            trait_ids.setdefault(rows[pid], []).append(trait_id)
        for row, ids in trait_ids.items():
            self.trait_set[row] = self._trait_set_id(tuple(sorted(set(ids))))
        by_row: dict[int, set[int]] = {}
        for pid, agg_id, agg_uuid in facts.aggregates:
            self.agg_by_uuid[agg_uuid] = agg_id
            self.agg_uuid[agg_id] = agg_uuid
            by_row.setdefault(rows[pid], set()).add(agg_id)
        for row, agg_ids in by_row.items():
            self.row_aggs[row] = frozenset(agg_ids)
            for agg_id in agg_ids:
                self.agg_rows.setdefault(agg_id, set()).add(row)
                self._agg_arrays.pop(agg_id, None)
        changed = np.fromiter(rows.values(), I64, len(rows))
        self.seen[changed] = facts.seq
        self.version[changed] = next_version()
        self._derive(changed)
        if tree_changed:
            self.tree_version += 1

    def takes(self, facts: Facts, provider_ids: Collection[int]) -> bool:
        """Whether ``apply(facts, provider_ids)`` may use ``facts`` (complete rows read at
        change-log position ``facts.seq``) as they are: every root and parent they name is
        known, and no row of theirs was read at that position or later."""
        present = {p[0] for p in facts.providers}
        for _, _, root_id, parent_id in facts.providers:
            for link in (root_id, parent_id):
                if link is not None and link not in present and link not in self.row_of_id:
                    return False
        for provider_id in present.union(provider_ids):
            row = self.row_of_id.get(provider_id)
            if row is not None and self.seen[row] >= facts.seq:
                return False
        return True

    def add_usage(self, deltas: Mapping[tuple[int, int], int], seq: int) -> set[int]:
        """Apply ``{(provider id, class id): change of used}`` of the write at change-log
        position ``seq``, except to rows read from a snapshot that already had it; returns
        the providers that could not be updated this way (unknown here, or a class without
        a column)."""
        missing: set[int] = set()
        for (provider_id, rc_id), delta in deltas.items():
            row = self.row_of_id.get(provider_id)
            col = self.rc_col.get(rc_id)
            if row is None or col is None:
                missing.add(provider_id)
                continue
            if self.seen[row] >= seq:
                continue
            self.used[col, row] += delta
            self.free[col, row] -= delta
            self.version[row] = next_version()
        return missing

    def _derive(self, rows: IntArray) -> None:
        if not len(rows):
            return
        total = self.total[:, rows]
        cap = np.trunc((total - self.reserved[:, rows]) * self.ratio[:, rows]).astype(I64)
        cap[~self.inv[:, rows]] = 0
        self.capacity[:, rows] = cap
        self.free[:, rows] = cap - self.used[:, rows]

    @classmethod
    def build(cls, snap: IndexRead) -> IndexState:
        """A state holding exactly ``snap`` (every provider), built with array operations."""
        n = len(snap.ids)
        rc_ids = np.union1d(snap.inventories[:, 1], snap.usages[:, 1]).tolist()
        trait_ids = np.unique(snap.traits[:, 1]).tolist()
        state = cls(rows=max(n, 64), cols=max(len(rc_ids), 4), words=len(trait_ids) // 64 + 1)
        if not n:
            return state
        for rc_id in rc_ids:
            state.column(rc_id)
        for trait_id in trait_ids:
            state.bit(trait_id)
        ids = snap.ids
        state.size = n
        state.ids[:n] = ids
        state.alive[:n] = True
        state.uuids[:n] = snap.uuids
        state.row_of_id = dict(zip(ids.tolist(), range(n), strict=True))
        state.row_of_uuid = dict(zip(snap.uuids, range(n), strict=True))
        state.root[:n] = np.searchsorted(ids, snap.roots)
        has_parent = snap.parents >= 0
        state.parent[:n] = np.where(has_parent, np.searchsorted(ids, snap.parents), -1)
        state.children = int(has_parent.sum())

        # Class id -> column, as an array to translate whole columns at once.
        lookup = np.zeros(max(rc_ids, default=0) + 1, I64)
        lookup[list(state.rc_col)] = list(state.rc_col.values())

        def columns(rc: IntArray) -> IntArray:
            found: IntArray = lookup[rc]
            return found

        inv = snap.inventories
        if len(inv):
            rows, cols = np.searchsorted(ids, inv[:, 0]), columns(inv[:, 1])
            state.inv[cols, rows] = True
            state.total[cols, rows] = inv[:, 2]
            state.reserved[cols, rows] = inv[:, 3]
            state.min_unit[cols, rows] = inv[:, 4]
            state.max_unit[cols, rows] = inv[:, 5]
            state.step[cols, rows] = np.maximum(inv[:, 6], 1)
            state.ratio[cols, rows] = snap.ratios
        if len(snap.usages):
            use = snap.usages
            state.used[columns(use[:, 1]), np.searchsorted(ids, use[:, 0])] = use[:, 2]
        if len(snap.traits):
            pairs = snap.traits[np.lexsort((snap.traits[:, 1], snap.traits[:, 0]))]
            rows = np.searchsorted(ids, pairs[:, 0])
            bits = np.array([state.trait_bit[t] for t in pairs[:, 1].tolist()], I64)
            values = np.left_shift(np.uint64(1), (bits % 64).astype(np.uint64))
            np.bitwise_or.at(state.traits, (bits // 64, rows), values)
            # Rows are sorted, so each provider's traits are one run of ``pairs``.
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            ends = np.r_[starts[1:], len(rows)]
            trait_list = pairs[:, 1].tolist()
            for row, a, b in zip(
                rows[starts].tolist(), starts.tolist(), ends.tolist(), strict=True
            ):
                state.trait_set[row] = state._trait_set_id(tuple(sorted(set(trait_list[a:b]))))
        state.agg_uuid = dict(snap.aggregates)
        state.agg_by_uuid = {u: i for i, u in snap.aggregates.items()}
        agg_by_row: dict[int, set[int]] = {}
        member_rows = np.searchsorted(ids, snap.memberships[:, 0]).tolist()
        for row, agg_id in zip(member_rows, snap.memberships[:, 1].tolist(), strict=True):
            state.agg_rows.setdefault(agg_id, set()).add(row)
            agg_by_row.setdefault(row, set()).add(agg_id)
        for row, agg_ids in agg_by_row.items():
            state.row_aggs[row] = frozenset(agg_ids)
        state.seen[:n] = snap.seq
        state.version[:n] = next_version()
        state._derive(np.arange(n, dtype=I64))
        return state
