"""The one typed source of configuration: a TOML file, overridden by ``ALLOTMENT_*`` environment
variables, overridden by command-line flags. Validated once at start-up.

Environment variables name a section and a key joined by a double underscore:
``ALLOTMENT_DATABASE__URL=postgresql+psycopg://...``, ``ALLOTMENT_SERVER__PORT=9000``.
Values are parsed as TOML scalars or arrays when they look like them (``true``, ``3``,
``["a", "b"]``) and as plain strings otherwise.
"""

from __future__ import annotations

import os
import re
import tomllib
import uuid as uuidlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from allotment.errors import ConfigError

ENV_PREFIX = "ALLOTMENT_"
# Options whose values ``to_toml`` never shows.
SECRET_OPTIONS = frozenset(
    {"token", "password", "admin_token", "application_credential_secret", "memcache_secret_key"}
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerConfig(Section):
    # Address to listen on (`--host`).
    host: str = "127.0.0.1"
    # Port to listen on (`--port`).
    port: int = Field(8778, ge=1, le=65535)
    # Worker processes sharing the port (`--workers`); each keeps its own index and host cache.
    workers: int = Field(1, ge=1, le=64)
    # The older spelling of [auth] strategy; when given, it wins (existing configurations).
    auth: Literal["token", "noauth", "keystone"] | None = None
    # Where the default SQLite database and the bootstrap admin token live.
    state_dir: Path = Path("var")
    # Placement answers at the root path; the scheduler API lives under this prefix.
    scheduler_prefix: str = "/scheduler/v1"
    # Seconds a stopping server gives open requests (and, with workers, the supervisor
    # gives its workers) before the rest is cut off.
    graceful_timeout: float = Field(10.0, gt=0, le=3600)


class AuthConfig(Section):
    """Who the caller is. ``token``: allotment's own tokens (stored hashed in SQL).
    ``keystone``: Keystone tokens validated by keystonemiddleware's ``auth_token`` with the
    ``[keystone_authtoken]`` options. ``noauth``: upstream Placement's noauth2, development only."""

    # `token`, `keystone` or `noauth` (`--auth`).
    strategy: Literal["token", "noauth", "keystone"] = "token"


class OsloPolicyConfig(Section):
    """oslo.policy's ``[oslo_policy]`` options, same names, same defaults as upstream."""

    # Refuse a token whose scope (system or project) the rule does not allow.
    enforce_scope: bool = True
    # Only the new (secure RBAC) defaults; false also accepts the deprecated `role:admin` ones.
    enforce_new_defaults: bool = True
    # YAML or JSON, upstream's rule syntax; overrides rules by name. Read at start-up.
    policy_file: Path | None = None


class DatabaseConfig(Section):
    # Empty means an SQLite file in the state directory.
    url: str = ""
    # Connections kept open per process (PostgreSQL, MariaDB).
    pool_size: int = Field(10, ge=1)
    # Server-side retries of a write transaction that lost a race (deadlock, generation).
    write_retries: int = Field(10, ge=0, le=100)
    # SQLite only: FULL makes every committed write survive a power cut; NORMAL is faster.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # Log every SQL statement (debugging only).
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _escape_at_in_password(cls, value: str) -> str:
        return escape_password_at(value)


def escape_password_at(url: str) -> str:
    """``postgresql://u:p@ss@host/db`` as ``postgresql://u:p%40ss@host/db``: the last ``@``
    of the authority ends the credentials (drivers would split at the first one, take the
    rest of the password for a host name and print it in their error)."""
    found = _RAW_AT_URL.match(url)
    if found is None:
        return url
    scheme, userinfo, rest = found.groups()
    if "@" not in userinfo:
        return url
    user, colon, password = userinfo.partition(":")
    return f"{scheme}{user.replace('@', '%40')}{colon}{password.replace('@', '%40')}@{rest}"


_RAW_AT_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/]*)@([^@/]*(?:/.*)?)$", re.DOTALL)


class PlacementConfig(Section):
    # How often each process polls the change sequence for other processes' writes (seconds).
    index_poll_interval: float = Field(1.0, gt=0, le=60)
    # Keep change-log rows this long; a process further behind rebuilds its index.
    change_log_retention_s: float = Field(3600.0, gt=0)
    # Shuffle allocation candidates before `limit` cuts them (upstream's option of the same name).
    randomize_allocation_candidates: bool = False
    # "distinct": candidates that differ only by which of several interchangeable providers
    # (identical leaves under one parent) serves which of several identical request groups
    # are returned once. "all": every such permutation, as upstream Placement does.
    allocation_candidate_permutations: Literal["distinct", "all"] = "distinct"


class PlacementClientConfig(Section):
    """Where the scheduler finds placement. No ``url`` and no ``auth_type``: the placement
    embedded in this process, called in-process. Otherwise that Placement (ours or
    OpenStack's) over HTTP: at ``url`` with a static ``token``, or through a keystoneauth1
    session configured with Nova's ``[placement]`` option names (``auth_type`` password,
    v3applicationcredential, admin_token, ...; the service catalog or ``endpoint_override``)."""

    # A remote Placement's URL (ours or OpenStack's); empty: the embedded one, or the service
    # catalog with `auth_type`.
    url: str = ""
    # Sent as X-Auth-Token (a keystone token, or noauth2's "admin"); prefer token_file or
    # ALLOTMENT_PLACEMENT_CLIENT__TOKEN to a command-line flag other users can read.
    # With auth_type = "admin_token": that plugin's token (and ``endpoint`` its URL).
    token: str | None = None
    # A file whose first line is the token (instead of `token`).
    token_file: Path | None = None
    # Nova's [placement] keystoneauth options.
    auth_type: str | None = None
    # keystoneauth1 (Nova's [placement]): the Keystone URL.
    auth_url: str | None = None
    # keystoneauth1: user name (`password` auth).
    username: str | None = None
    # keystoneauth1: user id, instead of `username`.
    user_id: str | None = None
    # keystoneauth1: the user's password.
    password: str | None = None
    # keystoneauth1: project to scope the token to.
    project_name: str | None = None
    # keystoneauth1: project id, instead of `project_name`.
    project_id: str | None = None
    # keystoneauth1: the user's domain.
    user_domain_name: str | None = None
    # keystoneauth1: the user's domain id.
    user_domain_id: str | None = None
    # keystoneauth1: the project's domain.
    project_domain_name: str | None = None
    # keystoneauth1: the project's domain id.
    project_domain_id: str | None = None
    # keystoneauth1: `all` for a system-scoped token.
    system_scope: str | None = None
    # keystoneauth1 (`v3applicationcredential`): the credential's id.
    application_credential_id: str | None = None
    # keystoneauth1: the credential's name (with the user).
    application_credential_name: str | None = None
    # keystoneauth1: the credential's secret.
    application_credential_secret: str | None = None
    # With `auth_type = "admin_token"`: the Placement URL that token is for.
    endpoint: str | None = None
    # Service type looked up in the catalog.
    service_type: str = "placement"
    # Service name looked up in the catalog, when several share the type.
    service_name: str | None = None
    # Catalog interfaces to use, in order of preference.
    valid_interfaces: list[str] = Field(default_factory=lambda: ["internal", "public"])
    # Catalog region.
    region_name: str | None = None
    # Use this URL instead of the catalog's (the token still comes from Keystone).
    endpoint_override: str | None = None
    # CA bundle to verify the server's certificate.
    cafile: Path | None = None
    # Do not verify the server's certificate (testing only).
    insecure: bool = False
    # Seconds to wait for each request to placement.
    timeout: float = Field(10.0, gt=0)
    # Retries of requests that cannot have taken effect (connection refused, 502/503/504
    # to reads), with exponential backoff from ``backoff`` seconds.
    retries: int = Field(3, ge=0, le=20)
    # Seconds before the first retry; doubled each time, with jitter.
    backoff: float = Field(0.2, ge=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    def read_token(self) -> str | None:
        """The token, from ``token`` or the first line of ``token_file``."""
        if self.token:
            return self.token
        if self.token_file is None:
            return None
        try:
            return self.token_file.read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"placement_client.token_file: cannot read it ({exc})") from None


class CorsConfig(Section):
    # Origins allowed to call the APIs from a browser (oslo.middleware's [cors] option); empty: CORS
    # off.
    allowed_origin: list[str] = Field(default_factory=list)
    # Request headers a browser may send, beyond the standard ones.
    allow_headers: list[str] = Field(default_factory=list)
    # Response headers a browser may read, beyond the standard ones.
    expose_headers: list[str] = Field(default_factory=list)


class PluginsConfig(Section):
    # Entry-point names an operator explicitly allows beyond the built-in ones.
    allowed: list[str] = Field(default_factory=list)


# Nova's default [filter_scheduler] enabled_filters.
DEFAULT_ENABLED_FILTERS = [
    "ComputeFilter",
    "ComputeCapabilitiesFilter",
    "ImagePropertiesFilter",
    "ServerGroupAntiAffinityFilter",
    "ServerGroupAffinityFilter",
]
# Every request filter Nova runs (each still checks its own enabling option), in Nova's order.
DEFAULT_REQUEST_FILTERS = [
    "require_tenant_aggregate",
    "map_az_to_placement_aggregate",
    "require_image_type_support",
    "compute_status_filter",
    "isolate_aggregates",
    "transform_image_metadata",
    "routed_networks_filter",
    "owner_nova_filter",
]


def _check_options(values: list[str], option: str) -> list[str]:
    """Nova's ``name=float`` list options; Nova ignores bad items, we refuse to start."""
    for item in values:
        key, sep, raw = item.partition("=")
        try:
            float(raw)
        except ValueError:
            key = ""
        if not (key.strip() and sep):
            raise ValueError(f"{option}: {item!r} is not of the form name=number")
    return values


def parse_weight_setting(values: list[str]) -> list[tuple[str, float]]:
    """``["name=1.0", ...]`` as (name, ratio) pairs (already validated at start-up)."""
    pairs = []
    for item in values:
        key, _, raw = item.partition("=")
        pairs.append((key.strip(), float(raw)))
    return pairs


class SchedulerConfig(Section):
    """Nova's ``[scheduler]`` options, plus the ``[DEFAULT]`` ones the scheduler reads."""

    # Tries per instance: the chosen host plus `max_attempts - 1` alternates.
    max_attempts: int = Field(3, ge=1)
    # Allocation candidates asked of placement per request (`limit`).
    max_placement_results: int = Field(1000, ge=1)
    # Not in Nova 34 (it always maps the AZ): false moves the AZ check after placement,
    # into the host filters, instead of passing the AZ's aggregates to placement.
    query_placement_for_availability_zone: bool = True
    # Tenants with a `filter_tenant_id` aggregate may only use its hosts (request filter
    # require_tenant_aggregate).
    limit_tenants_to_placement_aggregate: bool = False
    # With the above: a tenant in no such aggregate gets no host.
    placement_aggregate_required_for_tenants: bool = False
    # Ask placement for hosts supporting the image's disk format (`COMPUTE_IMAGE_TYPE_*`).
    query_placement_for_image_type_support: bool = False
    # Keep instances out of aggregates whose `trait:*=required` metadata the flavor and image do not
    # ask for.
    enable_isolated_aggregate_filtering: bool = False
    # Turn image properties (`hw_*` and the like) into required traits before placement.
    image_metadata_prefilter: bool = False
    # Ask Neutron for the segments of each requested network and port (nova.conf's [neutron]
    # credentials, so it needs [nova] config_file) and keep the instance in the placement
    # aggregates of those segments. Unset: nova.conf's [scheduler] value, else false.
    query_placement_for_routed_network_aggregates: bool | None = None
    # Entry points of group ``allotment.request_filters`` run before placement, in order.
    request_filters: list[str] = Field(default_factory=lambda: list(DEFAULT_REQUEST_FILTERS))
    # Nova's [DEFAULT] service_down_time: a host not heard from for longer is down.
    service_down_time: float = Field(60.0, gt=0)
    # Nova's [DEFAULT] default_availability_zone: the AZ of hosts in no AZ aggregate.
    default_availability_zone: str = "nova"
    # How often the host cache looks for unknown providers and repairs placement aggregates.
    periodic_interval: float = Field(10.0, gt=0)
    # A host report, aggregate or instance change sent to any process is used by every
    # other process's decisions after at most this many seconds (heartbeats are flushed
    # and the change log read every half of it).
    host_state_sync_delay: float = Field(1.0, gt=0, le=60)
    # Not in Nova: select_destinations calls that arrive while the process is deciding are
    # decided together next, their candidate queries asked once and their claims written
    # in one transaction (at most max_batch calls per batch; a lone call never waits).
    coalesce: bool = True
    # With coalesce: the most select_destinations calls decided in one batch.
    max_batch: int = Field(64, ge=1, le=1000)


class FilterSchedulerConfig(Section):
    """Nova's ``[filter_scheduler]`` options, same names, same defaults."""

    # Host filters run after placement, in order (entry points of `allotment.filters`, Nova's
    # names).
    enabled_filters: list[str] = Field(default_factory=lambda: list(DEFAULT_ENABLED_FILTERS))
    # "all" means every built-in weigher; plugin weighers are named explicitly.
    weight_classes: list[str] = Field(default_factory=lambda: ["all"])
    # Pick at random among this many best-weighed hosts.
    host_subset_size: int = Field(1, ge=1)
    # Nova reads [scheduler] max_attempts; accepted here too because operators write it so.
    max_attempts: int | None = Field(None, ge=1)
    # Shuffle the hosts that tie for the best weight.
    shuffle_best_same_weighed_hosts: bool = False
    # IoOpsFilter: hosts with more concurrent I/O operations are skipped.
    max_io_ops_per_host: int = Field(8, ge=0)
    # NumInstancesFilter: hosts with more instances are skipped.
    max_instances_per_host: int = Field(50, ge=1)
    # Keep the instance lists hosts send (affinity filters and weighers need them).
    track_instance_changes: bool = True
    # RAMWeigher: positive spreads by free RAM, negative stacks.
    ram_weight_multiplier: float = 1.0
    # CPUWeigher: positive spreads by free vCPUs, negative stacks.
    cpu_weight_multiplier: float = 1.0
    # DiskWeigher: positive spreads by free disk, negative stacks.
    disk_weight_multiplier: float = 1.0
    # HypervisorVersionWeigher: positive prefers newer hypervisors.
    hypervisor_version_weight_multiplier: float = 1.0
    # NumInstancesWeigher: positive prefers hosts with more instances.
    num_instances_weight_multiplier: float = 0.0
    # IoOpsWeigher: negative prefers lightly loaded hosts.
    io_ops_weight_multiplier: float = -1.0
    # ImagePropertiesWeigher: positive prefers hosts running instances of similar images.
    image_props_weight_multiplier: float = 0.0
    # ImagePropertiesWeigher: `property=weight` pairs; empty: every property counts 1.
    image_props_weight_setting: list[str] = Field(default_factory=list)
    # PCIWeigher: keeps PCI hosts for PCI requests.
    pci_weight_multiplier: float = Field(1.0, ge=0)
    # ServerGroupSoftAffinityWeigher.
    soft_affinity_weight_multiplier: float = Field(1.0, ge=0)
    # ServerGroupSoftAntiAffinityWeigher.
    soft_anti_affinity_weight_multiplier: float = Field(1.0, ge=0)
    # BuildFailureWeigher: how much recent failed builds push a host down.
    build_failure_weight_multiplier: float = 1000000.0
    # ImagePropertiesFilter: the architecture of images that name none.
    image_properties_default_architecture: str | None = None
    # IsolatedHostsFilter: images that may only run on `isolated_hosts`.
    isolated_images: list[str] = Field(default_factory=list)
    # IsolatedHostsFilter: hosts reserved for `isolated_images`.
    isolated_hosts: list[str] = Field(default_factory=list)
    # IsolatedHostsFilter: isolated hosts take no other image.
    restrict_isolated_hosts_to_isolated_images: bool = True
    # AggregateImagePropertiesIsolation: only metadata keys in this namespace count.
    aggregate_image_properties_isolation_namespace: str | None = None
    # AggregateImagePropertiesIsolation: the namespace separator.
    aggregate_image_properties_isolation_separator: str = "."
    # PCI devices are placement resources (`[pci] alias` resource_class and traits), as Nova's
    # option of the same name.
    pci_in_placement: bool = False

    @field_validator("image_props_weight_setting")
    @classmethod
    def _image_props_setting(cls, value: list[str]) -> list[str]:
        return _check_options(value, "image_props_weight_setting")


class CapacityFlavor(Section):
    """A flavor whose free capacity ``/metrics`` reports per availability zone
    (``allotment_capacity_instances{flavor, az}``): how many more instances of it fit; also
    what ``allotment capacity`` counts when no ``--flavor`` is named."""

    name: str = Field(min_length=1, max_length=255)
    vcpus: int = Field(0, ge=0)
    memory_mb: int = Field(0, ge=0)
    disk_gb: int = Field(0, ge=0)
    # Other resource classes the flavor asks for, as its ``resources:<CLASS>`` extra
    # specs would (e.g. {VGPU = 1}); a class set here wins over vcpus/memory_mb/disk_gb.
    resources: dict[str, int] = Field(default_factory=dict)

    @field_validator("resources")
    @classmethod
    def _classes(cls, value: dict[str, int]) -> dict[str, int]:
        for name, amount in value.items():
            if not re.fullmatch(r"[A-Z0-9_]+", name):
                raise ValueError(f"{name!r} is not a resource class name (A-Z, 0-9, _)")
            if amount < 0:
                raise ValueError(f"{name}: {amount} is negative")
        return value

    def as_flavor(self) -> dict[str, Any]:
        """The flavor body the scheduler takes (``allotment capacity`` counts these flavors
        when none is named): other classes as ``resources:<CLASS>`` extra specs."""
        return {
            "name": self.name,
            "vcpus": self.vcpus,
            "memory_mb": self.memory_mb,
            "root_gb": self.disk_gb,
            "extra_specs": {f"resources:{rc}": str(n) for rc, n in self.resources.items()},
        }

    def amounts(self) -> dict[str, int]:
        """Resource class -> amount one instance takes (zero amounts left out)."""
        found = {"VCPU": self.vcpus, "MEMORY_MB": self.memory_mb, "DISK_GB": self.disk_gb}
        found.update(self.resources)
        return {rc: n for rc, n in found.items() if n > 0}


class MetricsConfig(Section):
    """Nova's ``[metrics]`` options (MetricsFilter, MetricsWeigher), and the Prometheus
    endpoint's (``auth``, ``capacity_flavors``): one section, as both are "metrics" to an
    operator and no name is shared."""

    # MetricsWeigher: multiplier of the weighed metrics.
    weight_multiplier: float = 1.0
    # MetricsWeigher: `metric=ratio` pairs, e.g. `cpu.percent=-1.0`.
    weight_setting: list[str] = Field(default_factory=list)
    # MetricsFilter/Weigher: a host missing a weighed metric is filtered out (else weighed
    # `weight_of_unavailable`).
    required: bool = True
    # MetricsWeigher: weight of a host missing a metric when `required` is false.
    weight_of_unavailable: float = -10000.0
    # Who may read GET /metrics. "token": the caller must authenticate like any API
    # request (the configured [auth] strategy) and hold the admin, service or reader role;
    # "none": anyone who can reach the port (a scraper on a private network). The default
    # is "token": host names, flavor capacity and error rates describe the cloud.
    auth: Literal["none", "token"] = "token"
    # Flavors whose free capacity per availability zone /metrics reports, computed from
    # the capacity index in one pass at scrape time, e.g.
    # capacity_flavors = [{name = "m1.small", vcpus = 1, memory_mb = 2048, disk_gb = 20}]
    capacity_flavors: list[CapacityFlavor] = Field(default_factory=list, max_length=100)

    @field_validator("weight_setting")
    @classmethod
    def _weight_setting(cls, value: list[str]) -> list[str]:
        return _check_options(value, "weight_setting")

    @field_validator("capacity_flavors")
    @classmethod
    def _named_once(cls, value: list[CapacityFlavor]) -> list[CapacityFlavor]:
        names = [f.name for f in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"flavor names listed twice: {', '.join(dupes)}")
        empty = [f.name for f in value if not f.amounts()]
        if empty:
            raise ValueError(f"flavors that ask for no resources: {', '.join(empty)}")
        return value


class PciAlias(Section):
    """One entry of Nova's ``[pci] alias``: what ``pci_passthrough:alias`` names mean."""

    name: str
    vendor_id: str | None = None
    product_id: str | None = None
    device_type: Literal["type-PCI", "type-PF", "type-VF"] | None = None
    numa_policy: Literal["required", "legacy", "preferred", "socket"] = "legacy"
    # With [filter_scheduler] pci_in_placement: the resource class and traits to request.
    resource_class: str | None = None
    traits: list[str] = Field(default_factory=list)


class PciConfig(Section):
    # Nova's `[pci] alias` entries (name, vendor_id, product_id, device_type, numa_policy,
    # resource_class, traits), as TOML tables.
    alias: list[PciAlias] = Field(default_factory=list)

    @field_validator("alias")
    @classmethod
    def _unique(cls, value: list[PciAlias]) -> list[PciAlias]:
        names = [a.name for a in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate PCI alias names: {', '.join(dupes)}")
        return value


class NovaConfig(Section):
    """``[nova]``: serve Nova's scheduler RPC API next to the HTTP APIs.

    ``config_file`` is the operator's nova.conf: its ``[DEFAULT] transport_url`` (and
    ``[oslo_messaging_rabbit]`` options) say where the RPC server listens. No file: no
    RPC server.
    """

    # nova.conf whose transport_url the RPC server listens on (`--nova-config`).
    config_file: Path | None = None
    # The cell a Selection names when its host's cell is not known: hosts read from Nova's
    # databases carry their own cell (cell_mappings); hosts reported over HTTP use this,
    # e.g. a single-cell deployment's cell1 uuid (``nova-manage cell_v2 list_cells``).
    cell_uuid: str | None = None
    # The RPC server's name (Nova's [DEFAULT] host); empty: nova.conf's host, else the
    # machine's host name.
    host: str = ""
    # Read host state from Nova's databases (nova.conf's [api_database] and every cell's
    # database) when nova.conf names them.
    read_databases: bool = True
    # Seconds between two reads of Nova's databases (compute nodes, services, instances,
    # aggregates). Nova's scheduler reads them for every request; computes write their
    # service heartbeat every report_interval (10 s): a service disabled or forced down
    # in Nova stops receiving instances within this interval.
    resync_interval: float = Field(10.0, gt=0)

    @field_validator("cell_uuid")
    @classmethod
    def _cell_uuid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(uuidlib.UUID(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a UUID") from None


class LimitsConfig(Section):
    """Bounded work per request (each documented in README, "Limits")."""

    # Request line plus headers; beyond it: 431, before the application sees the request.
    max_header_bytes: int = Field(65536, ge=1024)
    # Request body; beyond it: 413 from the Content-Length alone, without reading the rest.
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # A token longer than this is refused (401) before any lookup.
    max_token_bytes: int = Field(8192, ge=64)
    # A connection's request line and headers must arrive within this (slowloris): 408.
    header_timeout: float = Field(10.0, gt=0)
    # Reading a whole request, and answering a read (GET); a read not answered by then
    # is a 503. Writes, once read, are never abandoned: their answer says what happened.
    request_timeout: float = Field(60.0, gt=0)
    # Allocation candidates one request may produce, spread evenly over trees as ``limit``
    # is. A ``limit`` above it is a 400 (the caller asked for more than will be given).
    max_allocation_candidates: int = Field(10000, ge=1)


class LoggingConfig(Section):
    # DEBUG, INFO, WARNING or ERROR.
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # One line per request at INFO (logger allotment.access): method, path, route
    # template, status, duration in ms, request and global request ids, user and project.
    access_log: bool = False
    # "text": one human line per record. "json": one JSON object per line (time, level,
    # logger, message, request_id, global_request_id, user_id, project_id, and the access
    # line's method, path, route, status, duration_ms) for log pipelines.
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def parse_flavor(text: str) -> dict[str, Any]:
    """``name:vcpus:memory_mb:root_gb`` as a flavor body; ValueError saying what is wrong."""
    parts = text.split(":")
    if len(parts) != 4 or not parts[0]:
        raise ValueError(f"flavor {text!r} is not name:vcpus:memory_mb:root_gb")
    try:
        vcpus, memory_mb, root_gb = (int(p) for p in parts[1:])
    except ValueError:
        raise ValueError(
            f"flavor {text!r}: vcpus, memory_mb and root_gb must be integers"
        ) from None
    if min(vcpus, memory_mb, root_gb) < 0:
        raise ValueError(f"flavor {text!r}: amounts must not be negative")
    return {"name": parts[0], "vcpus": vcpus, "memory_mb": memory_mb, "root_gb": root_gb}


class Settings(Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    oslo_policy: OsloPolicyConfig = Field(default_factory=OsloPolicyConfig)
    # Passed as they are to keystonemiddleware's auth_token (www_authenticate_uri,
    # auth_url, auth_type, username, password, memcached_servers, ...).
    keystone_authtoken: dict[str, str | int | float | bool | list[str]] = Field(
        default_factory=dict
    )
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    placement: PlacementConfig = Field(default_factory=PlacementConfig)
    placement_client: PlacementClientConfig = Field(default_factory=PlacementClientConfig)
    cors: CorsConfig = Field(default_factory=CorsConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    filter_scheduler: FilterSchedulerConfig = Field(default_factory=FilterSchedulerConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    pci: PciConfig = Field(default_factory=PciConfig)
    nova: NovaConfig = Field(default_factory=NovaConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @property
    def auth_strategy(self) -> str:
        """[server] auth when given (the older spelling), else [auth] strategy."""
        return self.server.auth or self.auth.strategy

    @property
    def max_attempts(self) -> int:
        """[filter_scheduler] max_attempts when given, else Nova's [scheduler] max_attempts."""
        return self.filter_scheduler.max_attempts or self.scheduler.max_attempts

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.server.state_dir / 'allotment.sqlite'}"


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        out.setdefault(section, {})[key] = _parse_env_value(raw)
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown option")
        else:
            lines.append(f"  {where}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from file, environment and explicit overrides, in rising priority."""
    data: dict[str, Any] = {}
    sources = ["defaults"]
    if config_file is not None:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
        sources.append(str(path))
    env = _env_overrides(os.environ if environ is None else environ)
    if env:
        data = _merge(data, env)
        sources.append("environment")
    if overrides:
        data = _merge(data, {k: dict(v) for k, v in overrides.items() if v})
        sources.append("command line")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, " + ".join(sources))) from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def to_toml(settings: Settings, *, redact: Callable[[str], str] = lambda s: s) -> str:
    """The effective configuration as a TOML file ``load_settings`` reads back unchanged.

    ``redact`` is applied to every string (credentials in URLs, say).
    """
    lines: list[str] = []
    for section, values in settings.model_dump(mode="json").items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is None:  # TOML has no null: an unset option is left out
                if key not in SECRET_OPTIONS:  # an unset secret: nothing to say
                    lines.append(f"# {key} is unset")
                continue
            if key in SECRET_OPTIONS:
                value = "***"
            if isinstance(value, str):
                value = redact(value)
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
