"""Nova's versioned objects on the wire, read and written without importing Nova.

A versioned object travels as its primitive: ``{"nova_object.name", ".namespace",
".version", ".data", ".changes"}``, ``data`` holding only the fields that are set (nested
objects as primitives again, sets as lists). We decode the ``RequestSpec`` nova-conductor
sends, with everything it carries, into our own ``RequestSpec`` (or, from a caller
pinned below RPC 4.3, the legacy dicts it is flattened to), and encode the ``Selection``
objects it expects back.

Versions follow oslo.versionedobjects: within a major version a newer minor only adds
fields, so an object newer than the ones we know is read for the fields we know (what
``obj_make_compatible`` would leave if Nova backported it); an older one lacks fields
added since, which take their defaults (and InstanceGroup before 1.11 names its policy
in a ``policies`` list). An unknown major version, another namespace, or another object
than the field holds is refused with a message that says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from allotment import errors
from allotment.scheduler.records import AggregateBody, InstanceInfo, NetworkMetadata
from allotment.scheduler.request import (
    Cell,
    Destination,
    Flavor,
    Image,
    InstanceGroup,
    InstanceNumaCell,
    InstanceNumaTopology,
    Limits,
    NetworkRequest,
    NumaLimits,
    PciRequest,
    RequestGroup,
    RequestLevelParams,
    RequestSpec,
    RetryHost,
    SchedulerRetry,
)

LOG = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)
NAMESPACE = "nova"
# The newest version of each object we know (Nova 34). Reading needs the major to match.
KNOWN_VERSIONS: dict[str, tuple[int, int]] = {
    "RequestSpec": (1, 15),
    "Flavor": (1, 2),
    "ImageMeta": (1, 8),
    "ImageMetaProps": (1, 44),
    "InstanceGroup": (1, 11),
    "Destination": (1, 4),
    "CellMapping": (1, 1),
    "RequestGroup": (1, 3),
    "RequestLevelParams": (1, 1),
    "InstanceNUMATopology": (1, 3),
    "InstanceNUMACell": (1, 6),
    "InstancePCIRequests": (1, 1),
    "InstancePCIRequest": (1, 4),
    "NetworkRequestList": (1, 1),
    "NetworkRequest": (1, 3),
    "NetworkMetadata": (1, 0),
    "SchedulerRetries": (1, 1),
    "ComputeNodeList": (1, 17),
    "ComputeNode": (1, 19),
    "SchedulerLimits": (1, 0),
    "NUMATopologyLimits": (1, 1),
    "SecurityGroupList": (1, 1),
    "SecurityGroup": (1, 2),
    "Aggregate": (1, 3),
    "AggregateList": (1, 3),
    "InstanceList": (2, 6),
    "Instance": (2, 8),
    "Selection": (1, 1),
    # Stored in compute_nodes' JSON columns (read from Nova's cell databases).
    "NUMATopology": (1, 2),
    "NUMACell": (1, 5),
    "PciDevicePoolList": (1, 1),
    "PciDevicePool": (1, 1),
}
SELECTION_VERSION = "1.1"


class ObjectError(errors.InvalidInput):
    """A primitive we cannot read: malformed, another namespace, or an unknown major."""


@dataclass(frozen=True, slots=True)
class Primitive:
    """One decoded envelope: which object, which version, its set fields."""

    name: str
    version: tuple[int, int]
    data: Mapping[str, Any]
    where: str

    def has(self, field: str) -> bool:
        return field in self.data and self.data[field] is not None

    def get(self, field: str, default: Any = None) -> Any:
        value = self.data.get(field)
        return default if value is None else value

    def newer_than(self, minor: int) -> bool:
        return self.version[1] >= minor

    def child(self, field: str, name: str) -> Primitive | None:
        """The nested object in ``field`` (None when unset or null)."""
        value = self.data.get(field)
        return None if value is None else envelope(value, name, f"{self.where}.{field}")

    def children(self, field: str, name: str) -> list[Primitive]:
        """The objects of a ListOfObjectsField (a plain list of primitives)."""
        values = self.data.get(field) or []
        if not isinstance(values, list):
            raise ObjectError(f"{self.where}.{field}: expected a list of {name} objects.")
        return [envelope(v, name, f"{self.where}.{field}[{i}]") for i, v in enumerate(values)]

    def listed(self, field: str, name: str, item: str) -> list[Primitive]:
        """The items of an ObjectListBase object (``{"objects": [...]}``) in ``field``."""
        found = self.child(field, name)
        return [] if found is None else found.children("objects", item)


def _version(text: Any, where: str) -> tuple[int, int]:
    try:
        major, minor = (int(part) for part in str(text).split("."))
    except ValueError:
        raise ObjectError(f"{where}: {text!r} is not an object version (major.minor).") from None
    return major, minor


def envelope(value: Any, expected: str, where: str) -> Primitive:
    """Check one primitive's envelope: the object we expect, in Nova's namespace, at a
    major version we read."""
    if not isinstance(value, dict) or "nova_object.name" not in value:
        raise ObjectError(f"{where}: expected a {expected} versioned object primitive.")
    name = value["nova_object.name"]
    namespace = value.get("nova_object.namespace")
    if namespace != NAMESPACE:
        raise ObjectError(f"{where}: {name} is of namespace {namespace!r}, not {NAMESPACE!r}.")
    if name != expected:
        raise ObjectError(f"{where}: expected a {expected} object, got {name}.")
    version = _version(value.get("nova_object.version"), where)
    major, minor = KNOWN_VERSIONS[expected]
    if version[0] != major:
        raise ObjectError(
            f"{where}: {name} {version[0]}.{version[1]} is not understood; allotment reads "
            f"{name} {major}.x up to {major}.{minor}. Pin Nova's [upgrade_levels] or upgrade "
            "allotment."
        )
    data = value.get("nova_object.data", {})
    if not isinstance(data, dict):
        raise ObjectError(f"{where}: nova_object.data of {name} must be an object.")
    if version[1] > minor:
        LOG.debug(
            "%s: %s %d.%d is newer than %d.%d; reading the fields known",
            where,
            name,
            *version,
            major,
            minor,
        )
    return Primitive(name, version, data, where)


# -- decoding the RequestSpec -------------------------------------------------------------


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def decode_flavor(flavor: Primitive) -> Flavor:
    fields = (
        "name", "vcpus", "memory_mb", "root_gb", "ephemeral_gb", "swap", "extra_specs",
        "flavorid", "rxtx_factor", "vcpu_weight", "is_public", "disabled", "description",
    )  # fmt: skip
    data = {k: flavor.data[k] for k in fields if flavor.has(k)}
    # Nova allows a nameless flavor (nullable); ours names every flavor.
    data.setdefault("name", flavor.get("flavorid", ""))
    return _model(Flavor, data, flavor.where)


def decode_image(image: Primitive) -> Image:
    props = image.child("properties", "ImageMetaProps")
    return _image(image, dict(props.data) if props is not None else {})


def _image(image: Primitive, properties: dict[str, Any]) -> Image:
    fields = (
        "id", "name", "disk_format", "container_format", "min_ram", "min_disk", "status",
        "visibility", "owner", "size", "virtual_size", "checksum", "protected", "tags",
    )  # fmt: skip
    data: dict[str, Any] = {k: image.data[k] for k in fields if image.has(k)}
    data["properties"] = properties
    return _model(Image, data, image.where)


def decode_instance_group(group: Primitive) -> InstanceGroup:
    data: dict[str, Any] = {
        k: group.data[k]
        for k in ("uuid", "name", "project_id", "user_id", "members", "hosts")
        if group.has(k)
    }
    policy = group.get("policy")
    if policy is None and not group.newer_than(11):
        # Before 1.11 a group had a list of policies; Nova allowed one.
        policy = next(iter(_strings(group.get("policies", []))), None)
    if policy is None:
        raise ObjectError(f"{group.where}: the instance group has no policy.")
    data["policy"] = policy
    rules = group.get("_rules", {})
    if "max_server_per_host" in rules:
        data["rules"] = {"max_server_per_host": rules["max_server_per_host"]}
    return _model(InstanceGroup, data, group.where)


def decode_destination(destination: Primitive) -> Destination:
    data: dict[str, Any] = {
        k: destination.data[k]
        for k in ("host", "node", "aggregates", "allow_cross_cell_move", "forbidden_aggregates")
        if destination.has(k)
    }
    cell = destination.child("cell", "CellMapping")
    if cell is not None:
        # The mapping also carries the cell's transport URL and database connection,
        # credentials included: they are never read, kept or logged here.
        data["cell"] = Cell(uuid=str(cell.get("uuid", "")), name=cell.get("name"))
    return _model(Destination, data, destination.where)


def decode_numa_topology(topology: Primitive) -> InstanceNumaTopology:
    cells = []
    for cell in topology.children("cells", "InstanceNUMACell"):
        fields = (
            "id", "cpuset", "pcpuset", "cpuset_reserved", "memory", "pagesize", "cpu_policy",
            "cpu_thread_policy",
        )  # fmt: skip
        cells.append(
            _model(InstanceNumaCell, {k: cell.data[k] for k in fields if cell.has(k)}, cell.where)
        )
    return InstanceNumaTopology(
        cells=cells, emulator_threads_policy=topology.get("emulator_threads_policy")
    )


def decode_pci_requests(requests: Primitive) -> list[PciRequest]:
    fields = ("count", "spec", "alias_name", "request_id", "requester_id", "numa_policy")
    return [
        _model(PciRequest, {k: r.data[k] for k in fields if r.has(k)}, r.where)
        for r in requests.children("requests", "InstancePCIRequest")
    ]


def decode_request_group(group: Primitive) -> RequestGroup:
    fields = (
        "requester_id", "use_same_provider", "resources", "required_traits",
        "forbidden_traits", "aggregates", "forbidden_aggregates", "provider_uuids", "in_tree",
    )  # fmt: skip
    return _model(RequestGroup, {k: group.data[k] for k in fields if group.has(k)}, group.where)


def decode_retry(retry: Primitive) -> SchedulerRetry:
    hosts = [
        RetryHost(host=str(node.get("host", "")), nodename=node.get("hypervisor_hostname"))
        for node in retry.listed("hosts", "ComputeNodeList", "ComputeNode")
    ]
    return SchedulerRetry(num_attempts=retry.get("num_attempts", 0), hosts=hosts)


def decode_limits(limits: Primitive) -> Limits:
    data: dict[str, Any] = {
        k: limits.data[k] for k in ("vcpu", "disk_gb", "memory_mb") if limits.has(k)
    }
    numa = limits.child("numa_topology", "NUMATopologyLimits")
    if numa is not None:
        data["numa_topology"] = _model(
            NumaLimits,
            {
                k: numa.data[k]
                for k in ("cpu_allocation_ratio", "ram_allocation_ratio")
                if numa.has(k)
            },
            numa.where,
        )
    return _model(Limits, data, limits.where)


def _optional(spec: Primitive, field: str, name: str, decode: Callable[[Primitive], Any]) -> Any:
    found = spec.child(field, name)
    return None if found is None else decode(found)


def decode_request_spec(value: Any, *, where: str = "spec_obj") -> RequestSpec:
    """Our RequestSpec from the primitive of a Nova ``RequestSpec`` (1.x)."""
    spec = envelope(value, "RequestSpec", where)
    flavor = spec.child("flavor", "Flavor")
    if flavor is None:
        raise ObjectError(f"{where}: the request spec has no flavor.")
    if not spec.has("project_id"):
        raise ObjectError(f"{where}: the request spec has no project_id.")
    data: dict[str, Any] = {
        "project_id": spec.data["project_id"],
        "user_id": spec.get("user_id"),
        "flavor": decode_flavor(flavor),
        "image": _optional(spec, "image", "ImageMeta", decode_image),
        "availability_zone": spec.get("availability_zone"),
        "instance_group": _optional(spec, "instance_group", "InstanceGroup",
                                    decode_instance_group),
        "scheduler_hints": dict(spec.get("scheduler_hints", {})),
        "force_hosts": _strings(spec.get("force_hosts", [])),
        "force_nodes": _strings(spec.get("force_nodes", [])),
        "ignore_hosts": _strings(spec.get("ignore_hosts", [])),
        "requested_destination": _optional(spec, "requested_destination", "Destination",
                                           decode_destination),
        "is_bfv": bool(spec.get("is_bfv", False)),
        "instance_uuid": spec.get("instance_uuid"),
        "num_instances": spec.get("num_instances", 1),
        "numa_topology": _optional(spec, "numa_topology", "InstanceNUMATopology",
                                   decode_numa_topology),
        "pci_requests": _optional(spec, "pci_requests", "InstancePCIRequests",
                                  decode_pci_requests) or [],
        "requested_resources": [
            decode_request_group(g) for g in spec.children("requested_resources", "RequestGroup")
        ],
        "request_level_params": _optional(
            spec, "request_level_params", "RequestLevelParams",
            lambda p: _model(RequestLevelParams, dict(p.data), p.where),
        ),
        "requested_networks": [
            _model(NetworkRequest, dict(n.data), n.where)
            for n in spec.listed("requested_networks", "NetworkRequestList", "NetworkRequest")
        ],
        "network_metadata": _optional(
            spec, "network_metadata", "NetworkMetadata",
            lambda p: _model(NetworkMetadata, dict(p.data), p.where),
        ),
        "retry": _optional(spec, "retry", "SchedulerRetries", decode_retry),
        "limits": _optional(spec, "limits", "SchedulerLimits", decode_limits),
        "security_groups": [
            str(g.get("name", ""))
            for g in spec.listed("security_groups", "SecurityGroupList", "SecurityGroup")
        ],
    }  # fmt: skip
    return _model(RequestSpec, data, where)


def _model(model: type[ModelT], data: Mapping[str, Any], where: str) -> ModelT:
    """Validate decoded fields, leaving out any our model has no home for (a newer
    minor's); errors name the field as Nova does."""
    known = model.model_fields
    try:
        return model.model_validate({k: v for k, v in data.items() if k in known})
    except ValidationError as exc:
        item = exc.errors()[0]
        field = ".".join(str(part) for part in item["loc"])
        raise ObjectError(f"{where}.{field}: {item['msg']}") from None


# -- decoding the legacy (4.0) request_spec and filter_properties dicts ------------------
#
# What Nova's SchedulerAPI sends when [upgrade_levels] scheduler is below 4.3: its
# RequestSpec's ``to_legacy_request_spec_dict()`` and ``to_legacy_filter_properties_dict()``,
# read back as Nova's ``RequestSpec.from_primitives`` reads them. The nested Nova objects
# (flavor, NUMA topology, PCI requests, NUMA limits, destination) travel as primitives;
# the image as a plain dict of its fields. What the legacy form does not carry (is_bfv,
# the requested resources and networks, the group's name and rules, ...) stays unset, as
# in Nova.


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ObjectError(f"{where}: expected a dict, got {type(value).__name__}.")
    return value


def _object_or_fields(value: Any, name: str, where: str) -> Primitive | None:
    """A nested object as its primitive, or as the plain dict of its fields (the limits
    always travel so, via ``SchedulerLimits.to_dict()``; Nova reads a flavor dict too)."""
    if not value:
        return None
    if isinstance(value, dict) and "nova_object.name" not in value:
        return Primitive(name, KNOWN_VERSIONS[name], value, where)
    return envelope(value, name, where)


def _legacy_image(value: Any, where: str) -> Image | None:
    """Nova's ``ImageMeta.from_dict``: an empty dict is an image with no fields set."""
    if value is None:
        return None
    if isinstance(value, dict) and "nova_object.name" in value:
        return decode_image(envelope(value, "ImageMeta", where))
    image = Primitive("ImageMeta", KNOWN_VERSIONS["ImageMeta"], _mapping(value, where), where)
    return _image(image, dict(_mapping(image.get("properties"), f"{where}.properties")))


def _legacy_numa_topology(value: Any, where: str) -> InstanceNumaTopology | None:
    """An InstanceNUMATopology primitive, or the JSON of one (as an instance stores it)."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ObjectError(f"{where}: not the JSON of an InstanceNUMATopology.") from None
    found = None if value is None else envelope(value, "InstanceNUMATopology", where)
    return None if found is None else decode_numa_topology(found)


def _legacy_retry(value: Any, where: str) -> SchedulerRetry | None:
    """Nova's ``SchedulerRetries.from_dict``: ``hosts`` is a list of [host, node] pairs;
    a retry dict without them is an empty retry."""
    retry = _mapping(value, where)
    if not retry:
        return None
    pairs = retry.get("hosts")
    if pairs is None:
        return SchedulerRetry()
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise ObjectError(f"{where}.hosts: expected a list of [host, node] pairs.")
    hosts = [{"host": host, "nodename": node} for host, node in pairs]
    return _model(
        SchedulerRetry, {"num_attempts": retry.get("num_attempts") or 0, "hosts": hosts}, where
    )


def _legacy_group(props: Mapping[str, Any], where: str) -> InstanceGroup | None:
    """Nova's ``_populate_group_info``: an InstanceGroup object, else the old
    ``group_*`` keys (policy, hosts, members and uuid only) when ``group_updated``."""
    if props.get("instance_group"):
        return decode_instance_group(
            envelope(props["instance_group"], "InstanceGroup", f"{where}.instance_group")
        )
    if props.get("group_updated") is not True:
        return None
    policies = _strings(props.get("group_policies"))
    if not policies:
        raise ObjectError(f"{where}.group_policies: the instance group has no policy.")
    data: dict[str, Any] = {
        "policy": policies[0],
        "hosts": _strings(props.get("group_hosts")),
        "members": _strings(props.get("group_members")),
    }
    if props.get("group_uuid"):
        data["uuid"] = props["group_uuid"]
    return _model(InstanceGroup, data, where)


def decode_legacy_request_spec(request_spec: Any, filter_properties: Any) -> RequestSpec:
    """Our RequestSpec from select_destinations 4.0's ``request_spec`` and
    ``filter_properties`` dicts, as Nova's ``RequestSpec.from_primitives`` builds its own."""
    spec = _mapping(request_spec, "request_spec")
    props = _mapping(filter_properties, "filter_properties")
    instance = _mapping(spec.get("instance_properties"), "request_spec.instance_properties")
    flavor = _object_or_fields(spec.get("instance_type"), "Flavor", "request_spec.instance_type")
    if flavor is None:
        raise ObjectError("request_spec.instance_type: the request spec has no flavor.")
    if not instance.get("project_id"):
        raise ObjectError("request_spec.instance_properties: the request spec has no project_id.")
    if not instance.get("uuid"):
        # Nova's from_primitives refuses it too (RequestSpec.instance_uuid is not nullable).
        raise ObjectError("request_spec.instance_properties: the instance has no uuid.")
    where = "request_spec.instance_properties"
    pci = instance.get("pci_requests")
    hints = _mapping(props.get("scheduler_hints"), "filter_properties.scheduler_hints")
    limits = _object_or_fields(props.get("limits"), "SchedulerLimits", "filter_properties.limits")
    destination = props.get("requested_destination")
    data: dict[str, Any] = {
        "project_id": instance["project_id"],
        "user_id": instance.get("user_id"),
        "availability_zone": instance.get("availability_zone"),
        "instance_uuid": instance.get("uuid"),
        "numa_topology": _legacy_numa_topology(instance.get("numa_topology"),
                                               f"{where}.numa_topology"),
        "pci_requests": [] if pci is None else decode_pci_requests(
            envelope(pci, "InstancePCIRequests", f"{where}.pci_requests")),
        "flavor": decode_flavor(flavor),
        "image": _legacy_image(spec.get("image"), "request_spec.image"),
        "num_instances": spec.get("num_instances", 1),
        "ignore_hosts": _strings(props.get("ignore_hosts")),
        "force_hosts": _strings(props.get("force_hosts")),
        "force_nodes": _strings(props.get("force_nodes")),
        "retry": _legacy_retry(props.get("retry"), "filter_properties.retry"),
        # Nova's SchedulerLimits.from_dict of the default {}: limits with none set.
        "limits": Limits() if limits is None else decode_limits(limits),
        "instance_group": _legacy_group(props, "filter_properties"),
        # The legacy dict unwrapped single-valued hints; Nova wraps them back in lists.
        "scheduler_hints": {k: v if isinstance(v, list) else [v] for k, v in hints.items()},
        "requested_destination": None if not destination else decode_destination(
            envelope(destination, "Destination", "filter_properties.requested_destination")),
    }  # fmt: skip
    return _model(RequestSpec, data, "request_spec")


# -- decoding what the fanout casts carry ------------------------------------------------


@dataclass(frozen=True, slots=True)
class NovaAggregate:
    uuid: str
    body: AggregateBody


def _aggregate(aggregate: Primitive) -> NovaAggregate:
    if not aggregate.has("uuid"):
        raise ObjectError(f"{aggregate.where}: the aggregate has no uuid.")
    body = _model(
        AggregateBody,
        {
            "name": aggregate.get("name", ""),
            "hosts": _strings(aggregate.get("hosts", [])),
            "metadata": dict(aggregate.get("metadata", {})),
        },
        aggregate.where,
    )
    return NovaAggregate(str(aggregate.data["uuid"]), body)


def decode_aggregate(value: Any, *, where: str = "aggregate") -> NovaAggregate:
    """A host aggregate (its metadata holds the availability zone, as in Nova's DB)."""
    return _aggregate(envelope(value, "Aggregate", where))


def decode_aggregates(value: Any, *, where: str = "aggregates") -> list[NovaAggregate]:
    """``update_aggregates``' argument: one Aggregate, a list of them, or an AggregateList."""
    if isinstance(value, list):
        return [decode_aggregate(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and value.get("nova_object.name") == "AggregateList":
        items = envelope(value, "AggregateList", where).children("objects", "Aggregate")
        return [_aggregate(item) for item in items]
    return [decode_aggregate(value, where=where)]


def decode_instance(instance: Primitive) -> InstanceInfo:
    flavor = instance.child("flavor", "Flavor")
    return _model(
        InstanceInfo,
        {
            "uuid": instance.get("uuid"),
            "project_id": instance.get("project_id"),
            "user_id": instance.get("user_id"),
            "flavor_name": flavor.get("name") if flavor is not None else None,
        },
        instance.where,
    )


def decode_instance_info(value: Any, *, where: str = "instance_info") -> list[InstanceInfo]:
    """``update_instance_info``'s argument: an InstanceList (or a lone Instance)."""
    if isinstance(value, dict) and value.get("nova_object.name") == "Instance":
        return [decode_instance(envelope(value, "Instance", where))]
    instances = envelope(value, "InstanceList", where)
    return [decode_instance(i) for i in instances.children("objects", "Instance")]


# -- encoding Selections ------------------------------------------------------------------


def primitive(name: str, version: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A primitive of ours, every field set and marked changed (as Nova builds them)."""
    return {
        "nova_object.name": name,
        "nova_object.namespace": NAMESPACE,
        "nova_object.version": version,
        "nova_object.data": dict(data),
        "nova_object.changes": sorted(data),
    }


def encode_limits(limits: Mapping[str, Any]) -> dict[str, Any]:
    """SchedulerLimits 1.0 from a Selection's limits; ``numa_topology`` as
    NUMATopologyLimits 1.1, with the request's NetworkMetadata 1.0 when it has one (unset
    otherwise, as Nova's filter leaves it): the compute's claim checks the physnet and
    tunnel NUMA affinity again with it."""
    data: dict[str, Any] = {"numa_topology": None, "vcpu": None, "disk_gb": None, "memory_mb": None}
    for key in ("vcpu", "disk_gb", "memory_mb"):
        if limits.get(key) is not None:
            data[key] = int(limits[key])
    numa = limits.get("numa_topology")
    if numa:
        fields: dict[str, Any] = {
            "cpu_allocation_ratio": float(numa["cpu_allocation_ratio"]),
            "ram_allocation_ratio": float(numa["ram_allocation_ratio"]),
        }
        network = numa.get("network_metadata")
        if network is not None:
            fields["network_metadata"] = primitive(
                "NetworkMetadata",
                "1.0",
                {"physnets": sorted(network["physnets"]), "tunneled": bool(network["tunneled"])},
            )
        data["numa_topology"] = primitive("NUMATopologyLimits", "1.1", fields)
    return primitive("SchedulerLimits", "1.0", data)


@dataclass(frozen=True, slots=True)
class NovaSelection:
    """What one Selection 1.1 says: a destination, how to claim it, where it lives."""

    service_host: str
    nodename: str
    compute_node_uuid: str
    cell_uuid: str
    # The allocation request as the dict Nova's claim_resources PUTs; None: no claim.
    allocation_request: Mapping[str, Any] | None
    allocation_request_version: str | None
    limits: Mapping[str, Any]
    availability_zone: str | None

    def to_primitive(self, target_version: str = SELECTION_VERSION) -> dict[str, Any]:
        """The Selection primitive; at 1.0 without ``availability_zone`` (as Nova's
        ``obj_make_compatible`` does)."""
        data: dict[str, Any] = {
            "compute_node_uuid": self.compute_node_uuid,
            "service_host": self.service_host,
            "nodename": self.nodename,
            "cell_uuid": self.cell_uuid,
            "limits": encode_limits(self.limits),
            # A JSON string, not an object: Nova's field is a StringField ('null' for none).
            "allocation_request": orjson.dumps(self.allocation_request).decode(),
            "allocation_request_version": self.allocation_request_version,
            "availability_zone": self.availability_zone,
        }
        if _version(target_version, "Selection") < (1, 1):
            del data["availability_zone"]
        return primitive("Selection", target_version, data)

    def to_host_dict(self) -> dict[str, Any]:
        """The pre-Queens answer (``return_objects`` false): host, nodename, limits."""
        limits = {k: v for k, v in self.limits.items() if v is not None and k != "numa_topology"}
        if self.limits.get("numa_topology"):
            limits["numa_topology"] = encode_limits(self.limits)["nova_object.data"][
                "numa_topology"
            ]
        return {"host": self.service_host, "nodename": self.nodename, "limits": limits}
