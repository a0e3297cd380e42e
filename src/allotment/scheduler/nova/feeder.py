"""Host state from Nova's databases: the role Nova's own HostManager plays.

Every ``[nova] resync_interval`` seconds (and at start-up) the feeder reads the API
database and every enabled cell database (``novadb.py``) and makes the host cache match
what Nova's scheduler would see:

- a compute node (not deleted) whose host has a ``nova-compute`` service row becomes a
  host record: its JSON columns decoded (``cpu_info``, ``numa_topology`` and ``pci_stats``
  as Nova's object primitives, ``stats``, ``metrics``, ``supported_instances``), its
  ratios, its service's ``disabled`` / ``disabled_reason`` / ``forced_down`` / ``version``,
  its cell, and
  as heartbeat the service's ``last_seen_up`` (else ``created_at``), so ComputeFilter
  applies ``service_down_time`` exactly as Nova's db servicegroup driver does; a node
  without a service row is skipped, as Nova skips it;
- nodes this feeder wrote whose cell no longer lists them (deleted, service gone, cell
  disabled or unmapped) are forgotten;
- aggregates (hosts and metadata, ``availability_zone`` among them) mirror the API
  database: created, changed, deleted;
- each host's instances (not deleted) replace the host's instance list.

Only differences are written, through the HostManager's ordinary writes, so each lands in
SQL with a change-log row and every process (and ``--workers``) sees it within
``host_state_sync_delay``; an unchanged fleet costs reads only. A cell that cannot be read
is left as it was: its heartbeats stop advancing and its hosts go down after
``service_down_time``, as they would for Nova. The fanout casts (``rpc.py``) keep
aggregates and instances current between two rounds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from allotment import errors, log
from allotment.config import Settings
from allotment.context import RequestContext
from allotment.periodic import PeriodicTask
from allotment.scheduler.host_manager import HostManager
from allotment.scheduler.nova import novadb
from allotment.scheduler.nova.objects import ObjectError, Primitive, envelope
from allotment.scheduler.records import (
    AggregateBody,
    CpuInfo,
    HostRecord,
    HostReport,
    InstanceInfo,
    Metric,
    NetworkMetadata,
    NumaCell,
    NumaTopology,
    PciPool,
)

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResyncResult:
    """What one round changed (every count is of writes made)."""

    nodes: int
    written: int
    heartbeats: int
    removed: int
    aggregates: int
    instance_hosts: int
    failed_cells: list[str]


def _loads(text: Any) -> Any:
    if text is None or text == "":
        return None
    if isinstance(text, bytes | bytearray):
        text = text.decode()
    return orjson.loads(text)


def decode_numa(text: Any) -> NumaTopology | None:
    """``compute_nodes.numa_topology``: a NUMATopology 1.x primitive as JSON."""
    data = _loads(text)
    if data is None:
        return None
    topology = envelope(data, "NUMATopology", "numa_topology")
    cells = []
    for cell in topology.children("cells", "NUMACell"):
        shared = sorted(int(c) for c in cell.get("cpuset", []))
        dedicated = sorted(int(c) for c in cell.get("pcpuset", []))
        cells.append(
            NumaCell(
                id=int(cell.get("id", 0)),
                cpus=sorted(set(shared) | set(dedicated)),
                memory_mb=int(cell.get("memory", 0)),
                pinned_cpus=sorted(int(c) for c in cell.get("pinned_cpus", [])),
                siblings=[sorted(int(c) for c in s) for s in cell.get("siblings", [])],
                # Nova reports legacy vcpu_pin_set hosts with cpuset == pcpuset: each
                # CPU may be shared or pinned (our None).
                pcpus=None if shared == dedicated else dedicated,
                cpu_usage=int(cell.get("cpu_usage", 0)),
                memory_usage=int(cell.get("memory_usage", 0)),
                network_metadata=decode_cell_networks(cell),
                socket=int(cell.data["socket"]) if cell.has("socket") else None,
            )
        )
    return NumaTopology(cells=cells)


def decode_cell_networks(cell: Primitive) -> NetworkMetadata | None:
    """A NUMACell's ``network_metadata`` (NUMACell 1.3+): the physnets and tunnel local to
    it, from the compute's ``[neutron_physnet_*]`` / ``[neutron_tunnel]`` numa_nodes."""
    network = cell.child("network_metadata", "NetworkMetadata")
    if network is None:
        return None
    return NetworkMetadata(
        physnets=sorted(str(p) for p in network.get("physnets", [])),
        tunneled=bool(network.get("tunneled", False)),
    )


def decode_pci_stats(text: Any) -> list[PciPool]:
    """``compute_nodes.pci_stats``: a PciDevicePoolList primitive (or the older plain
    list of pool dicts)."""
    data = _loads(text)
    if not data:
        return []
    if isinstance(data, dict) and "nova_object.name" in data:
        pools = [
            p.data
            for p in envelope(data, "PciDevicePoolList", "pci_stats").children(
                "objects", "PciDevicePool"
            )
        ]
    else:
        pools = data if isinstance(data, list) else [data]
    found = []
    for pool in pools:
        tags = dict(pool.get("tags") or {})
        # The pre-object format kept tags beside the known keys.
        for key, value in pool.items():
            if key not in ("vendor_id", "product_id", "numa_node", "count", "tags"):
                tags.setdefault(key, value)
        found.append(
            PciPool(
                vendor_id=str(pool["vendor_id"]),
                product_id=str(pool["product_id"]),
                numa_node=pool.get("numa_node"),
                count=int(pool.get("count", 0)),
                tags={str(k): str(v) for k, v in tags.items()},
            )
        )
    return found


def decode_metrics(text: Any) -> list[Metric]:
    """``compute_nodes.metrics``: the monitors' list of {name, value, timestamp, source}."""
    data = _loads(text) or []
    return [
        Metric(
            name=str(m["name"]),
            value=float(m["value"]),
            timestamp=None if m.get("timestamp") is None else str(m["timestamp"]),
            source=None if m.get("source") is None else str(m["source"]),
        )
        for m in data
    ]


def _count(stats: Mapping[str, str], key: str) -> int:
    try:
        return max(0, int(stats.get(key, 0)))
    except ValueError:
        return 0


def _ratio(value: Any, default: float) -> float:
    # Nova too reads a missing or 0.0 ratio as its initial_*_allocation_ratio default.
    return default if value in (None, 0, 0.0) else float(value)


def build_report(node: Mapping[str, Any], service: novadb.ServiceRow, cell_uuid: str) -> HostReport:
    """A compute node row and its service as the host report the HTTP API takes. A JSON
    column that does not decode is logged and left empty, as a host that reports less."""
    where = f"compute node {node['uuid']} ({node['hypervisor_hostname']})"

    def column(name: str, decode: Any, empty: Any) -> Any:
        try:
            return decode(node[name])
        except (ValueError, TypeError, KeyError, ObjectError, ValidationError) as exc:
            LOG.warning("%s: %s cannot be read (%s); ignored", where, name, exc)
            return empty

    stats_raw = column("stats", _loads, None) or {}
    stats = {str(k): str(v) for k, v in stats_raw.items()} if isinstance(stats_raw, dict) else {}
    cpu_raw = column("cpu_info", _loads, None)
    cpu_info = column("cpu_info", lambda _: CpuInfo.model_validate(cpu_raw or {}), CpuInfo())
    supported = column("supported_instances", _loads, None) or []
    return HostReport(
        nodename=node["hypervisor_hostname"],
        compute_node_uuid=node["uuid"],
        hypervisor_type=node["hypervisor_type"],
        hypervisor_version=node["hypervisor_version"],
        host_ip=node["host_ip"] or None,
        cpu_info=cpu_info,
        numa_topology=column("numa_topology", decode_numa, None),
        pci_pools=column("pci_stats", decode_pci_stats, []),
        metrics=column("metrics", decode_metrics, []),
        stats=stats,
        supported_instances=[(str(s[0]), str(s[1]), str(s[2])) for s in supported if len(s) == 3],
        io_ops=_count(stats, "io_workload"),
        failed_builds=_count(stats, "failed_builds"),
        cpu_allocation_ratio=_ratio(node["cpu_allocation_ratio"], 4.0),
        ram_allocation_ratio=_ratio(node["ram_allocation_ratio"], 1.0),
        disabled=service.disabled,
        disabled_reason=service.disabled_reason,
        forced_down=service.forced_down,
        cell_uuid=cell_uuid,
        service_version=service.version,
    )


class NovaFeeder:
    """Reads Nova's databases and writes the differences into the HostManager."""

    def __init__(
        self, settings: Settings, hosts: HostManager, databases: novadb.NovaDatabases
    ) -> None:
        self.settings = settings
        self.hosts = hosts
        self.databases = databases
        self._lock = threading.Lock()
        # compute node uuid -> (its raw row and service, the report made of them).
        self._decoded: dict[str, tuple[tuple[Any, ...], HostReport]] = {}
        self._unmapped_warned: set[str] = set()

    def resync(self) -> ResyncResult:
        """One round: read everything, write what differs."""
        ctx = RequestContext.internal()
        with log.request_context(ctx), self._lock:
            started = time.perf_counter()
            state = self.databases.read()
            known_hosts, known_aggregates, known_instances = self.hosts.records()
            aggregates = self._aggregates(ctx, state, known_aggregates)
            nodes, written, beats, removed, wanted_instances = self._nodes(ctx, state, known_hosts)
            instance_hosts = self._instances(ctx, state, known_instances, wanted_instances)
            result = ResyncResult(
                nodes=nodes,
                written=written,
                heartbeats=beats,
                removed=removed,
                aggregates=aggregates,
                instance_hosts=instance_hosts,
                failed_cells=sorted(state.failed),
            )
            changed = written or removed or aggregates or instance_hosts
            (LOG.info if changed else LOG.debug)(
                "Nova databases read in %.0f ms: %d compute nodes in %d cell(s); %d written, "
                "%d heartbeats, %d forgotten, %d aggregates and %d hosts' instances changed",
                (time.perf_counter() - started) * 1000,
                nodes,
                len(state.read),
                written,
                beats,
                removed,
                aggregates,
                instance_hosts,
            )
            return result

    def _aggregates(
        self, ctx: RequestContext, state: novadb.NovaState, known: Mapping[str, Any]
    ) -> int:
        changed = 0
        for row in state.aggregates:
            old = known.get(row.uuid)
            if (
                old is not None
                and old.name == row.name
                and old.metadata == row.metadata
                and old.hosts == row.hosts
            ):
                continue
            body = AggregateBody(name=row.name, hosts=sorted(row.hosts), metadata=row.metadata)
            self.hosts.update_aggregate(ctx, row.uuid, body)
            changed += 1
        for uuid in sorted(known.keys() - {row.uuid for row in state.aggregates}):
            try:
                self.hosts.delete_aggregate(ctx, uuid)
                changed += 1
            except errors.NotFound:
                pass
        return changed

    def _nodes(
        self, ctx: RequestContext, state: novadb.NovaState, known: Mapping[str, HostRecord]
    ) -> tuple[int, int, int, int, dict[str, list[novadb.InstanceRow]]]:
        seen: set[str] = set()
        written = beats = 0
        instances: dict[str, list[novadb.InstanceRow]] = {}
        for cell_uuid, cell in state.read.items():
            for row in cell.nodes:
                node = novadb.node_dict(row)
                if not node["uuid"] or not node["host"]:
                    continue
                service = cell.services.get(node["host"])
                if service is None:
                    LOG.debug("compute node %s has no nova-compute service; skipped", node["uuid"])
                    continue
                seen.add(node["uuid"])
                instances[node["host"]] = cell.instances.get(node["host"], [])
                self._warn_unmapped(node["host"], cell_uuid, state.host_mappings)
                key = (row, service, cell_uuid)
                cached = self._decoded.get(node["uuid"])
                if cached is not None and cached[0] == key:
                    report = cached[1]
                else:
                    report = build_report(node, service, cell_uuid)
                    self._decoded[node["uuid"]] = (key, report)
                heartbeat = service.last_seen_up or 0.0
                old = known.get(report.compute_node_uuid)
                if (
                    old is not None
                    and (old.host, old.nodename) == (node["host"], report.nodename)
                    and old.report == report
                ):
                    if old.heartbeat >= heartbeat:
                        continue
                    beats += 1
                else:
                    written += 1
                self.hosts.report_host(ctx, node["host"], report, heartbeat=heartbeat)
        # Nodes of cells read that are gone; cells that failed keep theirs.
        listed = {cell.uuid for cell in state.cells}
        gone = [
            uuid
            for uuid, record in known.items()
            if record.report.cell_uuid is not None
            and uuid not in seen
            and record.report.cell_uuid not in state.failed
            and (record.report.cell_uuid in state.read or record.report.cell_uuid not in listed)
        ]
        for uuid in gone:
            self._decoded.pop(uuid, None)
        removed = self.hosts.remove_hosts(ctx, gone) if gone else 0
        return len(seen), written, beats, removed, instances

    def _warn_unmapped(self, host: str, cell_uuid: str, mappings: Mapping[str, str]) -> None:
        mapped = mappings.get(host)
        if mapped == cell_uuid or host in self._unmapped_warned:
            return
        self._unmapped_warned.add(host)
        LOG.warning(
            "host %s has compute nodes in cell %s but %s; Nova's conductor cannot build on "
            "it until `nova-manage cell_v2 discover_hosts` maps it",
            host,
            cell_uuid,
            "no host mapping" if mapped is None else f"a host mapping to cell {mapped}",
        )

    def _instances(
        self,
        ctx: RequestContext,
        state: novadb.NovaState,
        known: Mapping[str, Mapping[str, InstanceInfo]],
        wanted: Mapping[str, list[novadb.InstanceRow]],
    ) -> int:
        changed = 0
        for host, rows in sorted(wanted.items()):
            held = known.get(host, {})
            infos = [
                InstanceInfo(uuid=r.uuid, project_id=r.project_id, user_id=r.user_id) for r in rows
            ]
            fresh = [i for i in infos if held.get(i.uuid) != i]
            stale = held.keys() - {i.uuid for i in infos}
            if not fresh and not stale:
                continue
            if fresh:
                self.hosts.update_instance_info(ctx, host, fresh, from_database=True)
            if stale:
                self.hosts.sync_instance_info(
                    ctx, host, [i.uuid for i in infos], from_database=True
                )
            changed += 1
        return changed


def database_urls(nova_conf: Any) -> tuple[str | None, str | None]:
    """nova.conf's ``[api_database] connection`` and ``[database] connection``."""
    from oslo_config import cfg

    for group in ("api_database", "database"):
        # Registering an identical option again is a no-op in oslo.config.
        nova_conf.register_opt(cfg.StrOpt("connection", secret=True), group=group)
    return nova_conf.api_database.connection, nova_conf.database.connection


class NovaFeederTask:
    """The feeder as a background task of the app: one round at start (before requests
    are served the cache holds Nova's hosts), then one every ``resync_interval``."""

    def __init__(self, settings: Settings, hosts: HostManager, nova_conf: Any) -> None:
        api_url, main_url = database_urls(nova_conf)
        if not api_url:
            raise errors.ConfigError(
                "nova.conf has no [api_database] connection: host state cannot be read from "
                "Nova's databases (set [nova] read_databases = false to rely on host reports)"
            )
        self.databases = novadb.NovaDatabases(api_url, main_url)
        self.feeder = NovaFeeder(settings, hosts, self.databases)
        self.task = PeriodicTask("nova-databases", settings.nova.resync_interval, self._round)

    def _round(self) -> None:
        try:
            self.feeder.resync()
        except Exception:
            LOG.exception("reading Nova's databases failed; retrying in %.0f s", self.task.interval)

    def start(self) -> None:
        self._round()
        self.task.start()

    def stop(self) -> None:
        self.task.stop()
        self.databases.dispose()
