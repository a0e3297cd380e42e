"""What compute hosts tell the scheduler: host reports, aggregates, instances.

These are the validated shapes of the host-state API bodies (``PUT /hosts/{host}``,
``PUT /aggregates/{uuid}``, ``PUT /hosts/{host}/instances``) and of the rows the
HostManager persists. Field names follow Nova's ComputeNode / HostState so filters read
the same attributes Nova's do.
"""

from __future__ import annotations

import ipaddress
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from allotment.errors import InvalidInput

ModelT = TypeVar("ModelT", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _canonical_uuid(value: str) -> str:
    try:
        return str(uuidlib.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"{value!r} is not a UUID") from None


class CpuInfo(BaseModel):
    """The hypervisor's CPU description; extra keys (topology, maxphysaddr...) are kept for
    ComputeCapabilitiesFilter's ``capabilities:cpu_info:...`` lookups."""

    model_config = ConfigDict(extra="allow", frozen=True)

    arch: str | None = None
    vendor: str | None = None
    model: str | None = None
    features: list[str] = Field(default_factory=list)


class NetworkMetadata(_Model):
    """Physical networks and tunneled networks: for an instance, the ones its ports use
    (RequestSpec.network_metadata); for a host NUMA cell, the ones with NUMA affinity to it
    (the compute's ``[neutron_physnet_<name>] numa_nodes`` and ``[neutron_tunnel]
    numa_nodes``)."""

    physnets: list[str] = Field(default_factory=list)
    tunneled: bool = False


class NumaCell(_Model):
    id: int = Field(ge=0)
    # Host CPUs of this cell that guests may use.
    cpus: list[int]
    memory_mb: int = Field(ge=0)
    # CPUs already pinned to guests (a subset of the dedicated CPUs).
    pinned_cpus: list[int] = Field(default_factory=list)
    # Thread sibling sets, e.g. [[0, 8], [1, 9]]; empty when there is no SMT.
    siblings: list[list[int]] = Field(default_factory=list)
    # CPUs reserved for pinned guests (Nova's cpu_dedicated_set); None means every CPU in
    # ``cpus`` can be either shared or pinned (Nova's legacy vcpu_pin_set behaviour).
    pcpus: list[int] | None = None
    # Shared (floating) vCPUs and memory already used by guests on this cell.
    cpu_usage: int = Field(0, ge=0)
    memory_usage: int = Field(0, ge=0)
    # The networks local to this cell (Nova's NUMACell.network_metadata); None: none are.
    network_metadata: NetworkMetadata | None = None
    # The CPU socket the cell is on (``numa_policy=socket`` PCI requests); None: unknown.
    socket: int | None = Field(None, ge=0)


class NumaTopology(_Model):
    cells: list[NumaCell]


class PciPool(_Model):
    vendor_id: str
    product_id: str
    numa_node: int | None = None
    count: int = Field(ge=0)
    # Free-form pool tags (dev_type, physical_network, ...) matched by PCI alias specs.
    tags: dict[str, str] = Field(default_factory=dict)


class Metric(_Model):
    name: str
    value: float
    timestamp: str | None = None
    source: str | None = None


class HostReport(_Model):
    """Body of ``PUT /scheduler/v1/hosts/{host}``: a compute node's state; also a heartbeat."""

    # Defaults to the host name (one node per host, the libvirt case).
    nodename: str | None = None
    # The compute node's resource provider uuid in placement (the candidate root).
    compute_node_uuid: str
    hypervisor_type: str | None = None
    hypervisor_version: int | None = None
    host_ip: str | None = None
    cpu_info: CpuInfo = Field(default_factory=CpuInfo)
    numa_topology: NumaTopology | None = None
    pci_pools: list[PciPool] = Field(default_factory=list)
    metrics: list[Metric] = Field(default_factory=list)
    # Nova's compute-node stats (free-form strings), for ComputeCapabilitiesFilter.
    stats: dict[str, str] = Field(default_factory=dict)
    # Nova's supported_instances: [architecture, hypervisor type, vm mode] triples.
    supported_instances: list[tuple[str, str, str]] = Field(default_factory=list)
    io_ops: int = Field(0, ge=0)
    failed_builds: int = Field(0, ge=0)
    # Nova's initial_*_allocation_ratio defaults; the NUMA fit uses them as limits.
    cpu_allocation_ratio: float = Field(4.0, gt=0)
    ram_allocation_ratio: float = Field(1.0, gt=0)
    disabled: bool = False
    disabled_reason: str | None = None
    # Nova's services.forced_down: down whatever its heartbeat says (an operator's fence).
    forced_down: bool = False
    # The Nova cell the node's records live in (Selection.cell_uuid); None: the
    # ``[nova] cell_uuid`` setting applies.
    cell_uuid: str | None = None
    # Nova's services.version of the host's nova-compute service (the Nova DB feeder
    # sets it); None: not a nova-compute. Request filter owner_nova_filter reads it.
    service_version: int | None = Field(None, ge=0)

    @field_validator("compute_node_uuid")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return _canonical_uuid(value)

    @field_validator("cell_uuid")
    @classmethod
    def _cell_uuid(cls, value: str | None) -> str | None:
        return None if value is None else _canonical_uuid(value)

    @field_validator("host_ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address") from None
        return value


class AggregateBody(_Model):
    """Body of ``PUT /scheduler/v1/aggregates/{uuid}`` (Nova's update_aggregates)."""

    name: str
    hosts: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("metadata", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # Nova's aggregate metadata values are strings; filters compare them as strings.
        if isinstance(value, dict):
            return {
                k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()
            }
        return value


class InstanceInfo(_Model):
    """One instance on a host (Nova's update_instance_info), with what filters need."""

    uuid: str
    project_id: str | None = None
    user_id: str | None = None
    flavor_name: str | None = None
    # The image properties the instance booted with (ImagePropertiesWeigher).
    image_properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("uuid")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return _canonical_uuid(value)


@dataclass(frozen=True, slots=True)
class Aggregate:
    uuid: str
    name: str
    metadata: dict[str, str]
    hosts: frozenset[str]


@dataclass(frozen=True, slots=True)
class HostRecord:
    """A host report as stored, with its last heartbeat (seconds since the epoch)."""

    host: str
    nodename: str
    report: HostReport
    heartbeat: float
    updated_at: float

    @property
    def uuid(self) -> str:
        return self.report.compute_node_uuid


def parse(model: type[ModelT], data: Any, what: str) -> ModelT:
    """Validate an API body; errors name the field and the problem (400)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for item in exc.errors():
            where = ".".join(str(part) for part in item["loc"]) or what
            problems.append(f"{where}: {item['msg']}")
        raise InvalidInput(f"Invalid {what}: " + "; ".join(problems)) from None
