"""The per-host state of one scheduling cycle as plugins read it: the ``HostView`` of the
framework, implemented over the request's snapshot and the cycle's own copies of what
placing instances changes (free RAM, disk, vCPUs, instance and I/O counts, NUMA and PCI
usage, server-group membership). The shared snapshot is never written.

Everything is positional: position ``p`` is the p-th candidate that has a host record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from allotment.scheduler.framework import Column, CycleState, HostWeigher
from allotment.scheduler.numa import HostNuma, NumaRequest
from allotment.scheduler.pci import PciRequest
from allotment.scheduler.records import HostRecord, InstanceInfo, PciPool
from allotment.scheduler.request import RequestSpec
from allotment.scheduler.snapshot import BoolArray, FloatArray, HostSnapshot, IntArray

LOG = logging.getLogger(__name__)


class CycleView:
    """The candidates of one request that have a host record, and their changing state."""

    def __init__(
        self,
        spec: RequestSpec,
        numa_request: NumaRequest | None,
        pci_requests: Sequence[PciRequest],
        snapshot: HostSnapshot,
        uuids: Sequence[str],
        free_ram_mb: FloatArray,
        free_disk_mb: FloatArray,
        free_vcpus: FloatArray,
        instance_uuids: Sequence[str],
        now: float,
    ) -> None:
        self.spec = spec
        self.numa_request = numa_request
        self.pci_requests = pci_requests
        self.snapshot = snapshot
        self.now = now
        self.state = CycleState()
        rows = snapshot.rows_for(uuids)
        self.known: BoolArray = rows >= 0
        known = self.known
        self.rows: IntArray = rows[known]
        # Index into the caller's candidates of each position.
        self.candidate_index: IntArray = np.flatnonzero(known)
        self.size = len(self.rows)
        self.free_ram_mb = np.array(free_ram_mb, np.float64)[known]
        self.free_disk_mb = np.array(free_disk_mb, np.float64)[known]
        self.free_vcpus = np.array(free_vcpus, np.float64)[known]
        self.num_instances: IntArray = snapshot.num_instances[self.rows].copy()
        self.io_ops: IntArray = snapshot.io_ops[self.rows].copy()
        self._numa: dict[int, HostNuma | None] = {}
        self._pci: dict[int, tuple[PciPool, ...]] = {}
        self._added: dict[int, list[str]] = {}
        group = spec.instance_group
        self.group_hosts: set[str] = set(group.hosts) if group else set()
        # nova-api makes the instances being created members of their group first.
        self.group_members: frozenset[str] = (
            frozenset(group.members) | frozenset(instance_uuids) if group else frozenset()
        )
        self._member_counts: IntArray | None = None
        self._group_mask: BoolArray | None = None
        self._pos_of_row: IntArray | None = None
        self.instance_uuid: str | None = None

    # -- per-host reads ------------------------------------------------------------------

    def column(self, name: Column, pos: IntArray) -> npt.NDArray[Any]:
        """A static snapshot column's values for the hosts at positions ``pos``."""
        values: npt.NDArray[Any] = getattr(self.snapshot, name)
        rows = self.rows if len(pos) == self.size else self.rows[pos]
        result: npt.NDArray[Any] = values[rows]
        return result

    def metric(self, name: str, pos: IntArray) -> FloatArray:
        return self.snapshot.metric(name)[self.rows[pos]]

    def host_names(self, pos: IntArray) -> list[str]:
        names = self.snapshot.hosts
        return [names[r] for r in self.rows[pos].tolist()]

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

    def positions_of_nodes(self, uuids: Sequence[str]) -> IntArray:
        """Candidate positions of the compute nodes ``uuids`` (those that are candidates)."""
        rows = self.snapshot.rows_for(uuids)
        rows = rows[rows >= 0]
        if not len(rows):
            return np.zeros(0, np.int64)
        self.positions_of_hosts([])  # builds the row -> position map
        assert self._pos_of_row is not None
        found = self._pos_of_row[rows]
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

    def aggregate_set(self, pos: int) -> int:
        return int(self.snapshot.aggregate_set[self.rows[pos]])

    def aggregate_metadata(self, code: int) -> dict[str, set[str]]:
        return self.snapshot.aggregate_metadata(code)

    def aggregate_values(self, code: int, key: str) -> set[str]:
        return self.snapshot.aggregate_values(code, key)

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
