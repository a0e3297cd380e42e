"""One scheduling cycle: the hosts placement offered for a request, filtered and weighed
for each instance in turn, with each placed instance consumed from the hosts' state.

This is Nova's ``_schedule`` loop without the claims: ``next_hosts`` does what
``_get_sorted_hosts`` does (filters, weighers, ``host_subset_size``,
``shuffle_best_same_weighed_hosts``), ``consume`` what ``_consume_selected_host`` does,
``alternates`` what ``_get_alternate_hosts`` does. The caller owns claiming: it walks the
returned ranking, claims in placement, and calls ``consume`` for the host that took it.

Everything is positional: position ``p`` is the p-th candidate that has a host record.
Per-host state that placing instances changes (free RAM, disk, vCPUs, instance and
I/O counts, NUMA and PCI usage, group membership) is copied into the cycle, so the shared
snapshot is never written; consuming a host is O(1) array updates.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from allotment.errors import NoValidHost
from allotment.scheduler import numa as numa_fit
from allotment.scheduler import pci
from allotment.scheduler.explain import CLOSEST_MISSES, Explanation, Funnel, Miss, Rejection
from allotment.scheduler.filters.base import HostFilter
from allotment.scheduler.numa import HostNuma, NumaRequest
from allotment.scheduler.pci import PciRequest
from allotment.scheduler.records import HostRecord, InstanceInfo, PciPool
from allotment.scheduler.request import RequestSpec
from allotment.scheduler.resource_request import ResourceRequest
from allotment.scheduler.snapshot import BoolArray, FloatArray, HostSnapshot, IntArray
from allotment.scheduler.weighers.base import HostWeigher, WeigherFailed

if TYPE_CHECKING:
    from allotment.config import Settings

LOG = logging.getLogger(__name__)

# Hosts whose per-host-Python filters are asked about when explaining a NoValidHost.
_EXPLAIN_SLOW_FILTERS_ON = 256
# Hosts ranked eagerly; more are sorted only if the caller walks that far.
_RANK_HEAD = 16


def _present(sorted_values: IntArray, wanted: IntArray) -> BoolArray:
    """Which of ``wanted`` occur in ``sorted_values`` (a binary search each)."""
    if not len(sorted_values):
        return np.zeros(len(wanted), bool)
    at = np.minimum(np.searchsorted(sorted_values, wanted), len(sorted_values) - 1)
    found: BoolArray = sorted_values[at] == wanted
    return found


@dataclass(frozen=True, slots=True)
class Candidates:
    """What placement offered, by root provider (compute node) uuid, with the free
    resources the RAM / CPU / disk weighers read, aligned by position."""

    uuids: Sequence[str]
    free_ram_mb: FloatArray
    free_disk_mb: FloatArray
    free_vcpus: FloatArray

    @classmethod
    def from_provider_summaries(cls, summaries: Mapping[str, Mapping[str, Any]]) -> Candidates:
        """From ``GET /allocation_candidates`` provider summaries: each root's free
        VCPU / MEMORY_MB / DISK_GB summed over its tree (capacity - used)."""
        roots: list[str] = []
        free: dict[str, dict[str, float]] = {}
        for uuid, summary in summaries.items():
            root = summary.get("root_provider_uuid") or uuid
            if root not in free:
                roots.append(root)
                free[root] = {"VCPU": 0.0, "MEMORY_MB": 0.0, "DISK_GB": 0.0}
            for rc, usage in summary.get("resources", {}).items():
                if rc in free[root]:
                    free[root][rc] += usage["capacity"] - usage["used"]
        return cls(
            uuids=roots,
            free_ram_mb=np.array([free[r]["MEMORY_MB"] for r in roots], np.float64),
            free_disk_mb=np.array([free[r]["DISK_GB"] * 1024 for r in roots], np.float64),
            free_vcpus=np.array([free[r]["VCPU"] for r in roots], np.float64),
        )


@dataclass(frozen=True, slots=True)
class HostChoice:
    """A host as the caller needs it to claim and to answer."""

    position: int
    # Index into the caller's ``Candidates`` (to find the host's allocation requests).
    candidate: int
    host: str
    nodename: str
    compute_node_uuid: str
    weight: float


@dataclass
class Prepared:
    """A request after translation and request filters, ready for placement; built by
    ``Pipeline.prepare``."""

    spec: RequestSpec
    resources: ResourceRequest
    numa: NumaRequest | None
    pci: list[PciRequest]
    funnel: Funnel = field(default_factory=Funnel)


class Ranking:
    """The hosts for one instance, in the order to try them: the chosen host first (random
    among the best ``host_subset_size``), then the rest by descending weight."""

    def __init__(
        self,
        cycle: Cycle,
        positions: IntArray,
        weights: FloatArray,
        subset_size: int,
        shuffle_best: bool,
        rng: random.Random,
    ) -> None:
        self._cycle = cycle
        self.positions = positions
        self.weights = weights
        self._head: list[int] | None = None
        if subset_size == 1 and not shuffle_best:
            # The common case needs only the best host; the order behind it is computed
            # if the caller walks on (its claim failed).
            self._chosen = int(np.argmax(weights))
            return
        count = min(len(positions), max(subset_size, _RANK_HEAD))
        head = self._order(count, rng if shuffle_best else None)
        subset = head[:subset_size]
        self._chosen = subset[rng.randrange(len(subset))] if len(subset) > 1 else subset[0]
        self._head = [self._chosen, *(i for i in head if i != self._chosen)]

    def _order(self, count: int, shuffle_with: random.Random | None) -> list[int]:
        """Indexes into ``positions`` of the ``count`` best hosts, best first (ties keep
        candidate order; with ``shuffle_with`` the hosts tied for best are shuffled)."""
        weights = self.weights
        head: list[int] = []
        if shuffle_with is not None:
            best = np.flatnonzero(weights == weights.max()).tolist()
            shuffle_with.shuffle(best)
            head = best
            if len(head) >= count:
                return head
        if count >= len(weights):
            order = np.lexsort((np.arange(len(weights)), -weights))
        else:
            top = np.argpartition(-weights, count - 1)[:count]
            order = top[np.lexsort((top, -weights[top]))]
        taken = set(head)
        return head + [int(i) for i in order if int(i) not in taken][: count - len(head)]

    @property
    def first(self) -> HostChoice:
        return self._choice(self._chosen)

    def _choice(self, index: int) -> HostChoice:
        return self._cycle.choice(int(self.positions[index]), float(self.weights[index]))

    def __len__(self) -> int:
        return len(self.positions)

    def __iter__(self) -> Iterator[HostChoice]:
        yield self._choice(self._chosen)
        if self._head is None:
            head = self._order(min(len(self.positions), _RANK_HEAD), None)
            self._head = [self._chosen, *(i for i in head if i != self._chosen)]
        for index in self._head[1:]:
            yield self._choice(index)
        if len(self._head) < len(self.positions):
            seen = set(self._head)
            rest = np.lexsort((np.arange(len(self.weights)), -self.weights))
            for index in rest.tolist():
                if index not in seen:
                    yield self._choice(index)


class _Scores:
    """Weights of the alive hosts, kept current as hosts are consumed or drop out.

    Clamped raw weights live in a (weighers x alive hosts) matrix; placing an instance
    rewrites one column of the dynamic weighers and re-derives only their bounds.
    Weighers that rank every alive host the same and cannot change are left out: they
    add 0 to every host, as Nova's normalization makes them.
    """

    def __init__(self, cycle: Cycle, weighers: Sequence[HostWeigher]) -> None:
        self.cycle = cycle
        active: list[tuple[HostWeigher, float | FloatArray]] = []
        for weigher in weighers:
            if not weigher.applies(cycle):
                continue
            multiplier = cycle.multiplier(weigher)
            if not np.any(multiplier):
                continue
            active.append((weigher, multiplier))
        self.weighers = [w for w, _ in active]
        self.multipliers = [m for _, m in active]
        self.alive: IntArray = np.zeros(0, np.int64)
        # The weighers in the matrix (indexes into ``weighers``), and their matrix rows.
        self.rows: list[int] = []
        self.matrix = np.zeros((0, 0))
        self.mult_matrix: FloatArray | None = None
        self.low = np.zeros(0)
        self.high = np.zeros(0)
        self.stale = np.zeros(0, bool)

    def _clamp(self, weigher: HostWeigher, values: FloatArray) -> FloatArray:
        if weigher.minval is not None:
            values = np.maximum(values, weigher.minval)
        if weigher.maxval is not None:
            values = np.minimum(values, weigher.maxval)
        return values

    def _bounds(self, weigher: HostWeigher, values: FloatArray) -> tuple[float, float]:
        low = float(values.min()) if weigher.minval is None else float(weigher.minval)
        high = float(values.max()) if weigher.maxval is None else float(weigher.maxval)
        return low, high

    def reset(self, alive: IntArray) -> None:
        self.alive = alive
        rows: list[int] = []
        values: list[FloatArray] = []
        bounds: list[tuple[float, float]] = []
        for k, weigher in enumerate(self.weighers):
            raw = weigher.weigh(self.cycle, alive)
            clamped = self._clamp(weigher, raw)
            low, high = self._bounds(weigher, clamped)
            if high == low and not weigher.dynamic:
                continue
            rows.append(k)
            values.append(clamped)
            bounds.append((low, high))
        self.rows = rows
        self.matrix = np.vstack(values) if values else np.zeros((0, len(alive)))
        self.low = np.array([b[0] for b in bounds])
        self.high = np.array([b[1] for b in bounds])
        self.stale = np.zeros(len(rows), bool)
        self.mult_matrix = None
        if any(isinstance(self.multipliers[k], np.ndarray) for k in rows):
            self.mult_matrix = np.vstack(
                [np.broadcast_to(self.multipliers[k], (self.cycle.size,))[alive] for k in rows]
            )

    def drop(self, positions: IntArray) -> None:
        """Forget hosts that dropped out (cheaper than a reset when they are few)."""
        columns = np.searchsorted(self.alive, positions)
        self.alive = np.delete(self.alive, columns)
        self.matrix = np.delete(self.matrix, columns, axis=1)
        if self.mult_matrix is not None:
            self.mult_matrix = np.delete(self.mult_matrix, columns, axis=1)
        self.stale[:] = True

    def update(self, pos: int) -> None:
        column = int(np.searchsorted(self.alive, pos))
        if column >= len(self.alive) or self.alive[column] != pos:
            return
        at = np.array([pos])
        for row, k in enumerate(self.rows):
            weigher = self.weighers[k]
            if weigher.dynamic:
                value = weigher.weigh(self.cycle, at)
                self.matrix[row, column] = self._clamp(weigher, value)[0]
                self.stale[row] = True

    def _scale(self) -> FloatArray:
        """1 / (high - low) per matrix row (0 where every host weighs the same), after
        bringing the bounds of rows changed by consumption up to date."""
        for row in np.flatnonzero(self.stale).tolist():
            self.low[row], self.high[row] = self._bounds(
                self.weighers[self.rows[row]], self.matrix[row]
            )
        self.stale[:] = False
        span = self.high - self.low
        scale: FloatArray = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
        return scale

    def breakdown(self, positions: IntArray) -> dict[str, FloatArray]:
        """Each weigher's share of the weights of ``positions`` (alive hosts): normalized
        raw weight times multiplier; the shares add up to ``totals``."""
        if len(self.alive) <= 1:
            return {}
        scale = self._scale()
        columns = np.searchsorted(self.alive, positions)
        shares: dict[str, FloatArray] = {}
        for row, k in enumerate(self.rows):
            multiplier = self.multipliers[k]
            if isinstance(multiplier, np.ndarray):
                multiplier = multiplier[positions]
            normalized = (self.matrix[row, columns] - self.low[row]) * scale[row]
            shares[self.weighers[k].name] = multiplier * normalized
        return shares

    def totals(self) -> FloatArray:
        count = len(self.alive)
        if count <= 1 or not self.rows:
            return np.zeros(count)
        scale = self._scale()
        if self.mult_matrix is None:
            multipliers = np.array([self.multipliers[k] for k in self.rows], np.float64)
            coef = multipliers * scale
            totals: FloatArray = coef @ self.matrix - float(coef @ self.low)
            return totals
        totals = ((self.matrix - self.low[:, None]) * (self.mult_matrix * scale[:, None])).sum(
            axis=0
        )
        return totals


class Cycle:
    """Filters and weighs the candidates of one request, one instance at a time."""

    def __init__(
        self,
        settings: Settings,
        filters: Sequence[HostFilter],
        weighers: Sequence[HostWeigher],
        prepared: Prepared,
        snapshot: HostSnapshot,
        candidates: Candidates,
        instance_uuids: Sequence[str] = (),
        *,
        now: float,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.spec = prepared.spec
        self.numa_request = prepared.numa
        self.pci_requests = prepared.pci
        self.funnel = prepared.funnel
        self.snapshot = snapshot
        self.now = now
        self.rng = rng or random.Random()
        rows = snapshot.rows_for(candidates.uuids)
        known = rows >= 0
        self.rows: IntArray = rows[known]
        self.candidate_index: IntArray = np.flatnonzero(known)
        self.size = len(self.rows)
        self.free_ram_mb = np.array(candidates.free_ram_mb, np.float64)[known]
        self.free_disk_mb = np.array(candidates.free_disk_mb, np.float64)[known]
        self.free_vcpus = np.array(candidates.free_vcpus, np.float64)[known]
        self.num_instances: IntArray = snapshot.num_instances[self.rows].copy()
        self.io_ops: IntArray = snapshot.io_ops[self.rows].copy()
        self._numa: dict[int, HostNuma | None] = {}
        self._pci: dict[int, tuple[PciPool, ...]] = {}
        self._added: dict[int, list[str]] = {}
        group = self.spec.instance_group
        self.group_hosts: set[str] = set(group.hosts) if group else set()
        # nova-api makes the instances being created members of their group first.
        self.group_members: frozenset[str] = (
            frozenset(group.members) | frozenset(instance_uuids) if group else frozenset()
        )
        self._member_counts: IntArray | None = None
        self._group_mask: BoolArray | None = None
        self._pos_of_row: IntArray | None = None
        self.index = -1
        self.instance_uuid: str | None = None
        self._dirty: list[int] = []
        self._removed: IntArray | None = None
        self._alive: IntArray = np.arange(self.size)
        self._filtered: IntArray = self._alive
        self._filters = [f for f in filters if f.applies(self)]
        self._skip_filters = bool(
            (self.spec.force_hosts or self.spec.force_nodes)
            and not self.spec.hint("_nova_check_type")
        )
        self._scores = _Scores(self, weighers)
        unknown = []
        if self.size < len(known):
            unknown = [candidates.uuids[i] for i in np.flatnonzero(~known)[:CLOSEST_MISSES]]
        detail: dict[str, Any] = {"unknown": unknown} if unknown else {}
        self.funnel.record("host_records", "hosts", len(known), self.size, **detail)

    # -- per-host reads for filters and weighers ----------------------------------------

    def at(self, column: npt.NDArray[Any], pos: IntArray) -> npt.NDArray[Any]:
        """A snapshot column's values for the hosts at candidate positions ``pos``."""
        rows = self.rows if len(pos) == self.size else self.rows[pos]
        return column[rows]

    def host(self, pos: int) -> str:
        return self.snapshot.hosts[int(self.rows[pos])]

    def nodename(self, pos: int) -> str:
        return self.snapshot.nodenames[int(self.rows[pos])]

    def record(self, pos: int) -> HostRecord:
        return self.snapshot.records[int(self.rows[pos])]

    def numa(self, pos: int) -> HostNuma | None:
        if pos in self._numa:
            return self._numa[pos]
        return self.snapshot.numa[int(self.rows[pos])]

    def pci_pools(self, pos: int) -> tuple[PciPool, ...]:
        if pos in self._pci:
            return self._pci[pos]
        return tuple(self.record(pos).report.pci_pools)

    def instances_on(self, pos: int) -> set[str]:
        found = set(self.snapshot.instances_on(self.host(pos)))
        found.update(self._added.get(pos, ()))
        return found

    def instance_infos(self, pos: int) -> Mapping[str, InstanceInfo]:
        return self.snapshot.instances_on(self.host(pos))

    def positions_of_hosts(self, hosts: Sequence[str]) -> IntArray:
        """Candidate positions of every node of the named hosts."""
        if self._pos_of_row is None:
            self._pos_of_row = np.full(len(self.snapshot), -1, np.int64)
            self._pos_of_row[self.rows] = np.arange(self.size)
        rows = [r for h in hosts for r in self.snapshot.rows_of_host.get(h, [])]
        found = self._pos_of_row[np.array(rows, np.int64)] if rows else np.zeros(0, np.int64)
        result: IntArray = found[found >= 0]
        return result

    def positions_with_instances(self, uuids: Sequence[str]) -> IntArray:
        """Candidate positions of the hosts running any of ``uuids`` (placed so far in this
        request included)."""
        hosts = {self.snapshot.host_of_instance(u) for u in uuids}
        hosts.discard(None)
        found = set(self.positions_of_hosts(sorted(h for h in hosts if h)).tolist())
        wanted = set(uuids)
        found.update(p for p, added in self._added.items() if wanted.intersection(added))
        return np.array(sorted(found), np.int64)

    def member_counts(self) -> IntArray:
        """Per position, how many members of the request's server group run there."""
        if self._member_counts is None:
            counts = np.zeros(self.size, np.int64)
            for uuid in self.group_members:
                host = self.snapshot.host_of_instance(uuid)
                if host is not None:
                    counts[self.positions_of_hosts([host])] += 1
            for pos, added in self._added.items():
                counts[pos] += sum(1 for uuid in added if uuid in self.group_members)
            self._member_counts = counts
        return self._member_counts

    def in_group_hosts(self) -> BoolArray:
        """Per position, whether the host already runs a member of the server group."""
        if self._group_mask is None:
            mask = np.zeros(self.size, bool)
            mask[self.positions_of_hosts(sorted(self.group_hosts))] = True
            self._group_mask = mask
        return self._group_mask

    def per_aggregate_set(
        self, compute: Callable[[int], Any], pos: IntArray, dtype: Any = bool
    ) -> npt.NDArray[Any]:
        """``compute(code)`` for the aggregate set of each position's host, evaluated once
        per distinct set of aggregates (there are few), for this request only."""
        sets = self.snapshot.aggregate_set[self.rows[pos]]
        codes = np.unique(sets)
        table = np.empty(len(self.snapshot.aggregate_sets), dtype)
        for code in codes.tolist():
            table[code] = compute(code)
        result: npt.NDArray[Any] = table[sets]
        return result

    def per_value(
        self,
        key: Any,
        read: Callable[[HostRecord], Hashable],
        evaluate: Callable[[Any], Any],
        pos: IntArray,
        dtype: Any = bool,
    ) -> npt.NDArray[Any]:
        """``evaluate(read(record))`` for each position's host, evaluated once per distinct
        value. ``read`` must depend only on static host fields: the per-row values are
        encoded once per snapshot under ``key``."""
        codes, values = self.snapshot.encoded(key, read)
        used = codes[self.rows[pos]]
        table = np.empty(len(values), dtype)
        for code in np.unique(used).tolist():
            table[code] = evaluate(values[code])
        result: npt.NDArray[Any] = table[used]
        return result

    def multiplier(self, weigher: HostWeigher) -> float | FloatArray:
        """The weigher's multiplier: one number, or per position when aggregates override
        it (Nova: the minimum of the values in the host's aggregates)."""
        default = weigher.multiplier()
        key = weigher.multiplier_key
        sign = -1.0 if weigher.negate_multiplier else 1.0
        if key is None or not self.snapshot.aggregates_with(key):
            return sign * default

        def value(code: int) -> float:
            found = self.snapshot.aggregate_values(code, key)
            if not found:
                return default
            try:
                return min(float(v) for v in found)
            except ValueError:
                LOG.warning("Could not decode %r weight multiplier: %s", key, sorted(found))
                return default

        table = self.snapshot.per_aggregate_set(("multiplier", key, default), value)
        per_host: FloatArray = (
            sign * np.asarray(table, np.float64)[self.snapshot.aggregate_set[self.rows]]
        )
        return per_host

    # -- the cycle ---------------------------------------------------------------------

    def next_hosts(self, instance_uuid: str | None = None) -> Ranking:
        """Filter and weigh for the next instance; raises NoValidHost (explained) when no
        host is left."""
        self.index += 1
        self.instance_uuid = instance_uuid
        if self.index == 0:
            self._alive = self._pre_filter(self._alive)
        if not self._skip_filters:
            self._alive = self._filter(self._alive)
        if not len(self._alive):
            raise self.no_valid_host()
        return self._rank()

    def _rank(self) -> Ranking:
        # Alive hosts only ever drop out, so an unchanged count means an unchanged set.
        try:
            self._sync_scores()
            weights = self._scores.totals()
        except WeigherFailed as exc:
            self.funnel.record(
                "weighers", "weigher", len(self._alive), 0, instance=self.index, error=str(exc)
            )
            raise self.no_valid_host() from None
        options = self.settings.filter_scheduler
        return Ranking(
            self,
            self._alive,
            weights,
            options.host_subset_size,
            options.shuffle_best_same_weighed_hosts,
            self.rng,
        )

    def _sync_scores(self) -> None:
        """Bring the weights to the alive hosts (alive hosts only ever drop out, so an
        unchanged count is an unchanged set)."""
        scores = self._scores
        if len(scores.alive) == len(self._alive):
            return
        removed = self._removed
        if removed is not None and len(scores.alive) - len(removed) == len(self._alive):
            scores.drop(removed)
        else:
            scores.reset(self._alive)

    def _pre_filter(self, alive: IntArray) -> IntArray:
        """Nova's host pre-selection: requested destination, ignored and forced hosts."""
        spec, snap = self.spec, self.snapshot
        destination = spec.requested_destination
        if destination is not None and (destination.host or destination.node):
            wanted = set(snap.node_rows(destination.host, destination.node))
            keep = np.fromiter((int(r) in wanted for r in self.rows[alive]), np.bool_, len(alive))
            alive = self._stage("requested_destination", alive, keep)
        if spec.ignore_hosts:
            ignored = {h.lower() for h in spec.ignore_hosts}
            keep = np.fromiter(
                (snap.hosts[r].lower() not in ignored for r in self.rows[alive]),
                np.bool_,
                len(alive),
            )
            alive = self._stage("ignore_hosts", alive, keep)
        if spec.force_hosts:
            forced = {h.lower() for h in spec.force_hosts}
            keep = np.fromiter(
                (snap.hosts[r].lower() in forced for r in self.rows[alive]), np.bool_, len(alive)
            )
            alive = self._stage("force_hosts", alive, keep)
        if spec.force_nodes:
            nodes = set(spec.force_nodes)
            keep = np.fromiter(
                (snap.nodenames[r] in nodes for r in self.rows[alive]), np.bool_, len(alive)
            )
            alive = self._stage("force_nodes", alive, keep)
        zone = spec.availability_zone
        if zone and not self.settings.scheduler.query_placement_for_availability_zone:
            keep = self.availability_zone_mask(zone, alive)
            alive = self._stage("availability_zone", alive, keep)
        self._filtered = alive
        return alive

    def availability_zone_mask(self, zone: str, pos: IntArray) -> BoolArray:
        """Hosts in ``zone`` (hosts in no zone aggregate are in the default zone)."""
        default = self.settings.scheduler.default_availability_zone

        def zones(code: int) -> frozenset[str]:
            found = self.snapshot.aggregate_values(code, "availability_zone")
            return frozenset(found or {default})

        return self.per_aggregate_set(lambda code: zone in zones(code), pos)

    def _stage(self, name: str, alive: IntArray, keep: BoolArray) -> IntArray:
        kept: IntArray = alive[keep]
        self.funnel.record(name, "hosts", len(alive), len(kept))
        return kept

    def _filter(self, alive: IntArray) -> IntArray:
        first = self.index == 0
        dirty = np.array(sorted(set(self._dirty)), np.int64)
        self._dirty.clear()
        before_all = len(alive)
        removed: list[IntArray] = []
        for host_filter in self._filters:
            if not len(alive):
                break
            if not first:
                if host_filter.run_filter_once_per_request:
                    continue
                if host_filter.host_local:
                    check = dirty[_present(alive, dirty)]
                    if not len(check):
                        continue
                    rejected = check[~host_filter.passes(self, check)]
                    if len(rejected):
                        before = len(alive)
                        alive = np.delete(alive, np.searchsorted(alive, rejected))
                        removed.append(rejected)
                        self.funnel.record(
                            host_filter.name, "filter", before, len(alive), instance=self.index
                        )
                    continue
            before = len(alive)
            mask = host_filter.passes(self, alive)
            if not first and not mask.all():
                removed.append(alive[~mask])
            alive = alive[mask]
            if first or len(alive) != before:
                self.funnel.record(
                    host_filter.name, "filter", before, len(alive), instance=self.index
                )
        # What later instances dropped, so the weights can drop those columns only.
        self._removed = np.concatenate(removed) if removed and len(alive) < before_all else None
        return alive

    def consume(self, pos: int, instance_uuid: str | None = None) -> None:
        """Account for an instance placed on the host at ``pos`` (Nova's
        ``consume_from_request`` plus the server-group bookkeeping)."""
        flavor = self.spec.flavor
        self.free_ram_mb[pos] -= flavor.memory_mb
        self.free_disk_mb[pos] -= (flavor.root_gb + flavor.ephemeral_gb) * 1024
        self.free_vcpus[pos] -= flavor.vcpus
        self.num_instances[pos] += 1
        self.io_ops[pos] += 1
        record = self.record(pos)
        topology = self.numa(pos)
        if self.numa_request is not None and topology is not None:
            fits = numa_fit.fit(
                topology,
                self.numa_request,
                record.report.cpu_allocation_ratio,
                record.report.ram_allocation_ratio,
            )
            if fits is not None:
                self._numa[pos] = numa_fit.consume(topology, self.numa_request, fits)
        if self.pci_requests:
            left = pci.allocate(self.pci_pools(pos), self.pci_requests)
            if left is not None:
                self._pci[pos] = left
        if self.spec.instance_group is not None:
            host = self.host(pos)
            if host not in self.group_hosts:
                self.group_hosts.add(host)
                if self._group_mask is not None:
                    self._group_mask[self.positions_of_hosts([host])] = True
            if instance_uuid is not None and instance_uuid not in self.instances_on(pos):
                self._added.setdefault(pos, []).append(instance_uuid)
                if self._member_counts is not None and instance_uuid in self.group_members:
                    self._member_counts[pos] += 1
        self._dirty.append(pos)
        self._scores.update(pos)

    def drop(self, positions: Sequence[int], stage: str, **detail: Any) -> None:
        """Take hosts out of the rest of the request: placement capacity that earlier
        instances used up, or a claim that conflicted. Recorded as one funnel stage."""
        wanted = np.unique(np.asarray(positions, np.int64))
        present = wanted[_present(self._alive, wanted)]
        if not len(present):
            return
        before = len(self._alive)
        in_sync = len(self._scores.alive) == before
        self._alive = np.setdiff1d(self._alive, present, assume_unique=True)
        if in_sync:
            self._scores.drop(present)
        self.funnel.record(
            stage, "hosts", before, len(self._alive), instance=max(self.index, 0), **detail
        )

    def weight_breakdown(self, positions: Sequence[int]) -> dict[str, FloatArray]:
        """Per weigher, its share of the current weight of each host in ``positions``
        (alive hosts, as ranked last): what ``explain`` shows an operator."""
        self._sync_scores()
        return self._scores.breakdown(np.asarray(positions, np.int64))

    def alternates(self, selected: Sequence[int], count: int) -> list[HostChoice]:
        """Up to ``count`` other hosts, best first, after re-filtering and re-weighing for
        what was consumed (Nova re-sorts once when more than one instance was placed).
        Hosts in ``selected`` (positions) are never alternates."""
        if count <= 0:
            return []
        if self._dirty and not self._skip_filters:
            self._alive = self._filter(self._alive)
        if not len(self._alive):
            return []
        self._sync_scores()
        weights = self._scores.totals()
        taken = set(selected)
        order = np.lexsort((np.arange(len(weights)), -weights))
        found: list[HostChoice] = []
        for index in order.tolist():
            pos = int(self._alive[index])
            if pos not in taken:
                found.append(self.choice(pos, float(weights[index])))
                if len(found) == count:
                    break
        return found

    def choice(self, pos: int, weight: float) -> HostChoice:
        row = int(self.rows[pos])
        return HostChoice(
            position=pos,
            candidate=int(self.candidate_index[pos]),
            host=self.snapshot.hosts[row],
            nodename=self.snapshot.nodenames[row],
            compute_node_uuid=self.snapshot.uuids[row],
            weight=weight,
        )

    # -- explanations ------------------------------------------------------------------

    def no_valid_host(self) -> NoValidHost:
        explanation = self.explain()
        return NoValidHost(explanation.summary, explanation=explanation.to_dict())

    def explain(self) -> Explanation:
        """Why the current instance found no host, with the hosts that came closest."""
        stage = self.funnel.emptied_by()
        # Request filters and placement may not count hosts: the first stage that did.
        total = next((s.before for s in self.funnel.stages if s.before is not None), 0)
        which = f" for instance {self.index + 1}" if self.index > 0 else ""
        if stage is None:
            summary = f"No valid host was found{which}."
        elif stage.kind == "filter":
            summary = (
                f"No valid host was found{which}: {stage.name} removed the last "
                f"{stage.before} of {total} candidate hosts."
            )
        elif stage.kind == "weigher":
            summary = f"No valid host was found{which}: {stage.detail.get('error')}."
        else:
            reason = stage.detail.get("reason")
            because = f" ({reason})" if reason else ""
            summary = f"No valid host was found{which}: stage {stage.name} left no host{because}."
        return Explanation(summary, self.funnel, self.index, self.closest_misses())

    def closest_misses(self) -> list[Miss]:
        """Hosts that reached the filters and failed the fewest of them, with reasons."""
        pos = self._filtered
        if not len(pos) or not self._filters:
            return []
        failures = np.zeros(len(pos), np.int64)
        verdicts: list[tuple[HostFilter, IntArray, BoolArray]] = []
        for host_filter in sorted(self._filters, key=lambda f: not f.vectorized):
            asked = pos
            if not host_filter.vectorized and len(pos) > _EXPLAIN_SLOW_FILTERS_ON:
                asked = pos[np.argsort(failures, kind="stable")[:_EXPLAIN_SLOW_FILTERS_ON]]
            ok = host_filter.passes(self, asked)
            failures[np.isin(pos, asked[~ok])] += 1
            verdicts.append((host_filter, asked, ok))
        order = [i for i in np.argsort(failures, kind="stable").tolist() if failures[i] > 0]
        misses = []
        for index in order[:CLOSEST_MISSES]:
            p = int(pos[index])
            rejections = tuple(
                Rejection(f.name, f.reason(self, p))
                for f, asked, ok in verdicts
                if p in asked and not ok[int(np.flatnonzero(asked == p)[0])]
            )
            misses.append(Miss(self.host(p), self.nodename(p), rejections))
        return misses
