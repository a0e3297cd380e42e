"""The host state snapshot: every known compute node as columns, frozen for one cycle.

A scheduling request takes the current snapshot once (kube-scheduler's per-cycle
snapshot) and reads nothing else, so a cache reset or a burst of host reports can never
show it half-updated state. Scalar host state (heartbeat, io_ops, instance counts, ratios,
metrics) is held as NumPy arrays over rows so filters and weighers are array expressions;
structured state (NUMA cells, PCI pools, CPU info) stays per row, read only for hosts
still alive when a filter needs it. Aggregate membership is encoded as one small integer
per row naming the host's *set* of aggregates: hosts in the same aggregates share all
aggregate-derived answers, so aggregate filters evaluate once per distinct set.

Snapshots are immutable. ``derive`` makes the next one from a few changed rows by copying
columns (microseconds at 10,000 hosts) instead of rebuilding from the records.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from itertools import repeat
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from allotment.scheduler import pci
from allotment.scheduler.numa import HostNuma
from allotment.scheduler.records import Aggregate, HostRecord, InstanceInfo

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
T = TypeVar("T")

_NO_IPV4 = -1
# A delta larger than this share of the base triggers a compaction of InstanceIndex.
_COMPACT_RATIO = 8


class InstanceIndex:
    """instance uuid -> host name, immutable. ``derive`` shares the (large) base mapping and
    layers the changes on top, compacting when the layer grows."""

    __slots__ = ("_base", "_delta")

    def __init__(self, base: dict[str, str], delta: dict[str, str | None] | None = None) -> None:
        self._base = base
        self._delta = delta or {}

    def get(self, uuid: str) -> str | None:
        if uuid in self._delta:
            return self._delta[uuid]
        return self._base.get(uuid)

    def derive(self, changes: Mapping[str, str | None]) -> InstanceIndex:
        delta = {**self._delta, **changes}
        if len(delta) * _COMPACT_RATIO > len(self._base) + 1024:
            base = dict(self._base)
            for uuid, host in delta.items():
                if host is None:
                    base.pop(uuid, None)
                else:
                    base[uuid] = host
            return InstanceIndex(base)
        return InstanceIndex(self._base, delta)


def _ipv4(address: str | None) -> int:
    if address is None:
        return _NO_IPV4
    parsed = ipaddress.ip_address(address)
    return int(parsed) if parsed.version == 4 else _NO_IPV4


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


# Columns of one numeric type each, filled from a host record (and its instance count).
_ARRAYS: dict[str, tuple[type, Callable[[HostRecord], Any]]] = {
    "heartbeat": (np.float64, lambda r: r.heartbeat),
    "disabled": (np.bool_, lambda r: r.report.disabled),
    "forced_down": (np.bool_, lambda r: r.report.forced_down),
    "io_ops": (np.int64, lambda r: r.report.io_ops),
    "failed_builds": (np.int64, lambda r: r.report.failed_builds),
    "hypervisor_version": (np.int64, lambda r: r.report.hypervisor_version or 0),
    "cpu_ratio": (np.float64, lambda r: r.report.cpu_allocation_ratio),
    "ram_ratio": (np.float64, lambda r: r.report.ram_allocation_ratio),
    "pci_free": (np.int64, lambda r: pci.free_devices(r.report.pci_pools)),
    "ipv4": (np.int64, lambda r: _ipv4(r.report.host_ip)),
    # -1: not a nova-compute (a host reported over HTTP).
    "service_version": (
        np.int64,
        lambda r: -1 if r.report.service_version is None else r.report.service_version,
    ),
}
# Report fields whose change keeps every cached static answer valid.
_DYNAMIC_FIELDS = frozenset(
    {
        "io_ops",
        "failed_builds",
        "metrics",
        "numa_topology",
        "pci_pools",
        "disabled",
        "disabled_reason",
        "forced_down",
    }
)


class HostSnapshot:
    """Every known compute node at one moment. Rows are sorted by (host, nodename)."""

    hosts: list[str]
    nodenames: list[str]
    uuids: list[str]
    records: list[HostRecord]
    numa: list[HostNuma | None]
    heartbeat: FloatArray
    disabled: BoolArray
    forced_down: BoolArray
    io_ops: IntArray
    failed_builds: IntArray
    hypervisor_version: IntArray
    cpu_ratio: FloatArray
    ram_ratio: FloatArray
    pci_free: IntArray
    ipv4: IntArray
    service_version: IntArray
    num_instances: IntArray
    # Metric name -> value per row (NaN where the host does not report the metric).
    metrics: dict[str, FloatArray]
    aggregates: list[Aggregate]
    # Per row, the index into ``aggregate_sets`` of the host's set of aggregates.
    aggregate_set: IntArray
    aggregate_sets: list[tuple[int, ...]]
    generation: int
    _metric_names: frozenset[str]
    _instances: dict[str, dict[str, InstanceInfo]]
    _instance_index: InstanceIndex
    _cache: dict[Any, Any]

    def __init__(self) -> None:
        raise TypeError("use HostSnapshot.build() or HostSnapshot.empty()")

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def empty(cls) -> HostSnapshot:
        return cls.build([], [], {})

    @classmethod
    def build(
        cls,
        records: Iterable[HostRecord],
        aggregates: Iterable[Aggregate],
        instances: Mapping[str, Mapping[str, InstanceInfo]],
        *,
        metric_names: Collection[str] = (),
        generation: int = 0,
    ) -> HostSnapshot:
        self = object.__new__(cls)
        rows = sorted(records, key=lambda r: (r.host, r.nodename))
        self.generation = generation
        self.records = rows
        self.hosts = [r.host for r in rows]
        self.nodenames = [r.nodename for r in rows]
        self.uuids = [r.uuid for r in rows]
        self.numa = [
            HostNuma.from_report(r.report.numa_topology) if r.report.numa_topology else None
            for r in rows
        ]
        for name, (dtype, read) in _ARRAYS.items():
            setattr(self, name, _frozen(np.fromiter(map(read, rows), dtype, len(rows))))
        self._metric_names = frozenset(metric_names)
        self.metrics = {
            name: _frozen(np.array([_metric(r, name) for r in rows], np.float64))
            for name in self._metric_names
        }
        self._instances = {host: dict(infos) for host, infos in instances.items()}
        self.num_instances = _frozen(
            np.array([len(self._instances.get(h, ())) for h in self.hosts], np.int64)
        )
        self._instance_index = InstanceIndex(
            {uuid: host for host, infos in self._instances.items() for uuid in infos}
        )
        self._index_rows()
        self._index_aggregates(aggregates)
        self._cache = {}
        return self

    def _index_rows(self) -> None:
        self.row_of_uuid = {uuid: row for row, uuid in enumerate(self.uuids)}
        rows_of_host: dict[str, list[int]] = {}
        for row, host in enumerate(self.hosts):
            rows_of_host.setdefault(host, []).append(row)
        self.rows_of_host = rows_of_host

    def _index_aggregates(self, aggregates: Iterable[Aggregate]) -> None:
        self.aggregates = sorted(aggregates, key=lambda a: a.uuid)
        self.aggregate_index = {a.uuid: i for i, a in enumerate(self.aggregates)}
        of_host: dict[str, list[int]] = {}
        for position, agg in enumerate(self.aggregates):
            for host in agg.hosts:
                of_host.setdefault(host, []).append(position)
        sets: dict[tuple[int, ...], int] = {(): 0}
        codes = np.zeros(len(self.hosts), np.int64)
        for host, rows in self.rows_of_host.items():
            key = tuple(of_host.get(host, ()))
            code = sets.setdefault(key, len(sets))
            codes[rows] = code
        self.aggregate_sets = list(sets)
        self.aggregate_set = _frozen(codes)

    def derive(
        self,
        records: Mapping[int, HostRecord] | None = None,
        instances: Mapping[str, Mapping[str, InstanceInfo]] | None = None,
        *,
        generation: int,
    ) -> HostSnapshot:
        """A new snapshot with some rows' records and some hosts' instances replaced.

        Rows keep their positions (adding or removing hosts, or changing aggregates, needs
        ``build``). Cached static answers carry over unless a static field changed.
        """
        new = copy.copy(self)
        new.generation = generation
        records = records or {}
        if records:
            new.records = list(self.records)
            for row, record in records.items():
                new.records[row] = record
            changed_rows = {
                row: record
                for row, record in records.items()
                if self.records[row].report is not record.report
            }
            # Heartbeats alone (the common case) touch one column.
            columns = list(_ARRAYS) if changed_rows else ["heartbeat"]
            touched = {name: getattr(self, name).copy() for name in columns}
            for row, record in records.items():
                for name in columns:
                    touched[name][row] = _ARRAYS[name][1](record)
            for name, array in touched.items():
                setattr(new, name, _frozen(array))
            if changed_rows:
                new._apply_reports(self, changed_rows)
        if instances:
            new._instances = dict(self._instances)
            counts = self.num_instances.copy()
            moved: dict[str, str | None] = {}
            # Removals first: an instance that moved is removed from one host and added to
            # another in the same change.
            for host, infos in instances.items():
                gone = self._instances.get(host, {}).keys() - infos.keys()
                moved.update(dict.fromkeys(gone))
            for host, infos in instances.items():
                added = infos.keys() - self._instances.get(host, {}).keys()
                moved.update(dict.fromkeys(added, host))
                new._instances[host] = dict(infos)
                counts[self.rows_of_host.get(host, [])] = len(infos)
            new.num_instances = _frozen(counts)
            new._instance_index = self._instance_index.derive(moved)
        return new

    def _apply_reports(self, old: HostSnapshot, rows: Mapping[int, HostRecord]) -> None:
        """Refresh the structured per-row state of rows whose report changed."""
        self.numa = list(old.numa)
        metrics = {name: array.copy() for name, array in old.metrics.items()}
        static_changed = False
        for row, record in rows.items():
            before = old.records[row].report
            changed = {
                f
                for f in type(before).model_fields
                if getattr(before, f) != getattr(record.report, f)
            }
            static_changed |= bool(changed - _DYNAMIC_FIELDS)
            if "numa_topology" in changed:
                topology = record.report.numa_topology
                self.numa[row] = HostNuma.from_report(topology) if topology else None
            for name, array in metrics.items():
                array[row] = _metric(record, name)
        self.metrics = {name: _frozen(array) for name, array in metrics.items()}
        if static_changed:
            self._cache = {}

    # -- lookups ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.hosts)

    def rows_for(self, uuids: Iterable[str]) -> IntArray:
        """Row of each compute-node uuid, -1 where no host reported it."""
        found: IntArray = np.fromiter(map(self.row_of_uuid.get, uuids, repeat(-1)), np.int64)
        return found

    def up(self, now: float, service_down_time: float) -> BoolArray:
        """Hosts heard from within ``service_down_time`` seconds and not forced down
        (Nova's db servicegroup)."""
        result: BoolArray = (np.abs(now - self.heartbeat) <= service_down_time) & ~self.forced_down
        return result

    def min_compute_version(self) -> int:
        """Nova's ``get_minimum_version_all_cells(['nova-compute'])`` over these hosts: per
        cell the lowest service version of the computes not forced down; a cell whose
        lowest is 0 does not count; the lowest over the cells, or 0 when none counts.
        Hosts that are not nova-computes (no service version) are not counted."""
        counted = (self.service_version >= 0) & ~self.forced_down
        if not counted.any():
            return 0
        cells, names = self.encoded("cell_uuid", lambda r: r.report.cell_uuid)
        unset = np.iinfo(np.int64).max
        lowest = np.full(len(names), unset, np.int64)
        np.minimum.at(lowest, cells[counted], self.service_version[counted])
        relevant = lowest[(lowest != unset) & (lowest > 0)]
        return int(relevant.min()) if relevant.size else 0

    def node_rows(self, host: str | None, node: str | None) -> list[int]:
        """Rows of a host, of a node, or of a host's node (Nova's host-or-node lookup)."""
        if host is not None:
            rows = self.rows_of_host.get(host, [])
            return [r for r in rows if node is None or self.nodenames[r] == node]
        return [r for r, name in enumerate(self.nodenames) if name == node]

    def instances_on(self, host: str) -> Mapping[str, InstanceInfo]:
        return self._instances.get(host, {})

    def host_of_instance(self, uuid: str) -> str | None:
        return self._instance_index.get(uuid)

    def aggregates_of(self, code: int) -> list[Aggregate]:
        return [self.aggregates[i] for i in self.aggregate_sets[code]]

    def aggregate_metadata(self, code: int) -> dict[str, set[str]]:
        """Nova's ``aggregate_metadata_get_by_host``: every key of the host's aggregates
        with the union of their comma-separated values."""

        def merge() -> dict[str, set[str]]:
            merged: dict[str, set[str]] = {}
            for agg in self.aggregates_of(code):
                for key, value in agg.metadata.items():
                    merged.setdefault(key, set()).update(v.strip() for v in value.split(","))
            return merged

        return self.cached(("aggregate_metadata", code), merge)

    def aggregate_values(self, code: int, key: str) -> set[str]:
        """Nova's ``aggregate_values_from_key``: the raw values of ``key`` in the host's
        aggregates."""
        return {agg.metadata[key] for agg in self.aggregates_of(code) if key in agg.metadata}

    def per_aggregate_set(self, key: Any, compute: Callable[[int], T]) -> list[T]:
        """``compute(code)`` for every aggregate set, cached under ``key`` for the snapshot;
        index the result with ``aggregate_set[rows]``."""
        return self.cached(key, lambda: [compute(c) for c in range(len(self.aggregate_sets))])

    def cached(self, key: Any, factory: Callable[[], T]) -> T:
        """Memoize an answer that depends only on static host fields and aggregates (never
        on heartbeats, io_ops, instances, NUMA/PCI usage or metrics)."""
        try:
            value: T = self._cache[key]
        except KeyError:
            value = self._cache[key] = factory()
        return value

    def encoded(
        self, key: Any, read: Callable[[HostRecord], Hashable]
    ) -> tuple[IntArray, list[Hashable]]:
        """A static per-row value as (code per row, distinct values), computed once per
        snapshot under ``key`` (see ``cached``)."""

        def encode() -> tuple[IntArray, list[Hashable]]:
            index: dict[Hashable, int] = {}
            codes = np.fromiter(
                (index.setdefault(read(r), len(index)) for r in self.records),
                np.int64,
                len(self.records),
            )
            return _frozen(codes), list(index)

        return self.cached(("encoded", key), encode)

    def metric(self, name: str) -> FloatArray:
        """One metric's value per row (NaN where the host does not report it)."""
        found = self.metrics.get(name)
        if found is None:
            found = np.array([_metric(r, name) for r in self.records], np.float64)
        return found

    def aggregates_with(self, key: str, value: str | None = None) -> list[Aggregate]:
        return [
            a
            for a in self.aggregates
            if key in a.metadata and (value is None or a.metadata[key] == value)
        ]


def _metric(record: HostRecord, name: str) -> float:
    for metric in record.report.metrics:
        if metric.name == name:
            return metric.value
    return float("nan")
