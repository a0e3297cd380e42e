"""The scheduling request: what ``select_destinations`` receives, validated once.

The shapes follow Nova's ``RequestSpec`` (flavor, image, server group, hints, forced and
ignored hosts, requested destination) as a JSON body, so a caller coming from Nova maps
its objects field by field. The models are immutable: what changes while a multi-instance
request is placed (hosts chosen so far, the instance being placed) lives in the
scheduling cycle, never in the spec.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from allotment.numbers import DB_MAX_INT
from allotment.scheduler.records import NetworkMetadata, parse

PciNumaPolicy = Literal["required", "legacy", "preferred", "socket"]
GroupPolicy = Literal["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Flavor(_Model):
    # Nova keeps these in 32-bit columns; larger numbers are no flavor Nova can have.
    name: str
    vcpus: int = Field(ge=0, le=DB_MAX_INT)
    memory_mb: int = Field(ge=0, le=DB_MAX_INT)
    root_gb: int = Field(0, ge=0, le=DB_MAX_INT)
    ephemeral_gb: int = Field(0, ge=0, le=DB_MAX_INT)
    swap: int = Field(0, ge=0, le=DB_MAX_INT)
    extra_specs: dict[str, str] = Field(default_factory=dict)
    # Nova's Flavor extras: carried for filters and the answer, not used to decide yet.
    flavorid: str | None = None
    rxtx_factor: float | None = None
    vcpu_weight: int | None = None
    is_public: bool = True
    disabled: bool = False
    description: str | None = None

    @field_validator("extra_specs", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # Nova stores extra specs as strings; callers often send numbers and booleans.
        if isinstance(value, dict):
            return {
                k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()
            }
        return value


class Image(_Model):
    id: str | None = None
    name: str | None = None
    disk_format: str | None = None
    container_format: str | None = None
    min_ram: int = 0
    min_disk: int = 0
    properties: dict[str, Any] = Field(default_factory=dict)
    # Nova's ImageMeta extras (Glance's image record).
    status: str | None = None
    visibility: str | None = None
    owner: str | None = None
    size: int | None = None
    virtual_size: int | None = None
    checksum: str | None = None
    protected: bool | None = None
    tags: list[str] = Field(default_factory=list)


class InstanceGroup(_Model):
    uuid: str | None = None
    name: str | None = None
    project_id: str | None = None
    user_id: str | None = None
    policy: GroupPolicy
    rules: dict[str, int] = Field(default_factory=dict)
    members: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)

    @property
    def max_server_per_host(self) -> int:
        return int(self.rules.get("max_server_per_host", 1))


class Cell(_Model):
    """A Nova cell, by uuid and name; never its transport URL or database connection."""

    uuid: str
    name: str | None = None


class Destination(_Model):
    host: str | None = None
    node: str | None = None
    cell: Cell | None = None
    # Nova's Destination.aggregates: each item is a comma-separated any-of list; items AND.
    aggregates: list[str] = Field(default_factory=list)
    # Providers in these aggregates must not be used (Nova's isolate_aggregates).
    forbidden_aggregates: list[str] = Field(default_factory=list)
    allow_cross_cell_move: bool = False


class InstanceNumaCell(_Model):
    """One guest NUMA cell Nova computed from the flavor and image (InstanceNUMACell)."""

    id: int = Field(ge=0)
    cpuset: list[int] = Field(default_factory=list)
    pcpuset: list[int] = Field(default_factory=list)
    cpuset_reserved: list[int] | None = None
    memory: int = Field(ge=0)
    pagesize: int | None = None
    cpu_policy: str | None = None
    cpu_thread_policy: str | None = None


class InstanceNumaTopology(_Model):
    cells: list[InstanceNumaCell] = Field(default_factory=list)
    emulator_threads_policy: str | None = None


class PciRequest(_Model):
    """One of the instance's PCI requests (InstancePCIRequest): an alias or a port's."""

    count: int = Field(ge=1)
    spec: list[dict[str, str | None]] = Field(default_factory=list)
    alias_name: str | None = None
    request_id: str | None = None
    requester_id: str | None = None
    # How close to the instance's NUMA cells the devices must be; None: "legacy".
    numa_policy: PciNumaPolicy | None = None


class RequestGroup(_Model):
    """A granular request group from a Neutron port or a Cyborg device profile."""

    requester_id: str | None = None
    use_same_provider: bool = True
    resources: dict[str, int] = Field(default_factory=dict)
    required_traits: list[str] = Field(default_factory=list)
    forbidden_traits: list[str] = Field(default_factory=list)
    # Each inner list is an any-of set of aggregate uuids; the lists AND.
    aggregates: list[list[str]] = Field(default_factory=list)
    forbidden_aggregates: list[str] = Field(default_factory=list)
    provider_uuids: list[str] = Field(default_factory=list)
    in_tree: str | None = None


class RequestLevelParams(_Model):
    root_required: list[str] = Field(default_factory=list)
    root_forbidden: list[str] = Field(default_factory=list)
    same_subtree: list[list[str]] = Field(default_factory=list)


class NetworkRequest(_Model):
    network_id: str | None = None
    address: str | None = None
    port_id: str | None = None
    pci_request_id: str | None = None
    tag: str | None = None
    arq_uuid: str | None = None
    device_profile: str | None = None


class RetryHost(_Model):
    host: str
    nodename: str | None = None


class SchedulerRetry(_Model):
    """Nova's SchedulerRetries: attempts so far and the hosts already tried."""

    num_attempts: int = Field(0, ge=0)
    hosts: list[RetryHost] = Field(default_factory=list)


class NumaLimits(_Model):
    cpu_allocation_ratio: float
    ram_allocation_ratio: float


class Limits(_Model):
    """Nova's SchedulerLimits as the caller sent them."""

    numa_topology: NumaLimits | None = None
    vcpu: int | None = None
    disk_gb: int | None = None
    memory_mb: int | None = None


class RequestSpec(_Model):
    project_id: str
    user_id: str | None = None
    flavor: Flavor
    image: Image | None = None
    availability_zone: str | None = None
    instance_group: InstanceGroup | None = None
    scheduler_hints: dict[str, Any] = Field(default_factory=dict)
    force_hosts: list[str] = Field(default_factory=list)
    force_nodes: list[str] = Field(default_factory=list)
    ignore_hosts: list[str] = Field(default_factory=list)
    requested_destination: Destination | None = None
    # Boot from volume: the root disk is not local, so DISK_GB excludes root_gb.
    is_bfv: bool = False
    # The rest of Nova's RequestSpec, carried so every door sees the same request.
    instance_uuid: str | None = None
    num_instances: int = Field(1, ge=1)
    numa_topology: InstanceNumaTopology | None = None
    pci_requests: list[PciRequest] = Field(default_factory=list)
    requested_resources: list[RequestGroup] = Field(default_factory=list)
    request_level_params: RequestLevelParams | None = None
    requested_networks: list[NetworkRequest] = Field(default_factory=list)
    network_metadata: NetworkMetadata | None = None
    retry: SchedulerRetry | None = None
    limits: Limits | None = None
    security_groups: list[str] = Field(default_factory=list)

    @property
    def image_properties(self) -> dict[str, Any]:
        return self.image.properties if self.image is not None else {}

    @property
    def extra_specs(self) -> dict[str, str]:
        return self.flavor.extra_specs

    @property
    def is_rebuild(self) -> bool:
        """Nova's ``request_is_rebuild``: the ``_nova_check_type`` hint is ``["rebuild"]``
        (a one-item list; the bare string is accepted too)."""
        return bool(self.hint("_nova_check_type") == "rebuild")

    def hint(self, name: str, default: Any = None) -> Any:
        """A scheduler hint the way Nova reads it: a one-item list is its only item."""
        value = self.scheduler_hints.get(name, default)
        if isinstance(value, list) and len(value) == 1:
            return value[0]
        return value

    def hint_list(self, name: str) -> list[str]:
        """A hint that names instances or hosts, always as a list of strings."""
        value = self.scheduler_hints.get(name)
        if value is None or value == "":
            return []
        if isinstance(value, list):
            return [str(v) for v in value]
        return [str(value)]


def parse_request_spec(data: Any) -> RequestSpec:
    """Validate a JSON request spec; errors name the field and what was wrong (400)."""
    return parse(RequestSpec, data, "request_spec")
