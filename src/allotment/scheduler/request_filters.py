"""Request filters: shape the placement query before placement runs (Nova's
``nova.scheduler.request_filter``), so hosts that can never match are not even offered.

Each filter reads its own ``[scheduler]`` option exactly as Nova's does, records what it
added in the funnel, and raises ``RequestFilterFailed`` when the request cannot be served
at all (which becomes an explained NoValidHost). They run in ``[scheduler]
request_filters`` order; plugins register under the ``allotment.request_filters`` entry
point group.

One deliberate difference: an availability zone that no aggregate defines is a
NoValidHost here. Nova silently drops the constraint and schedules anywhere.
"""

from __future__ import annotations

import abc
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import os_traits

from allotment.config import Settings
from allotment.context import RequestContext
from allotment.errors import AllotmentError, ConfigError, NeutronRefused
from allotment.scheduler.explain import Funnel
from allotment.scheduler.request import NetworkRequest, RequestSpec
from allotment.scheduler.resource_request import PCI_GROUP_PREFIX, ResourceRequest
from allotment.scheduler.snapshot import HostSnapshot

if TYPE_CHECKING:
    from allotment.scheduler.nova.neutron import NeutronClient
    from allotment.scheduler.placement import PlacementClient

LOG = logging.getLogger(__name__)

TENANT_METADATA_KEY = "filter_tenant_id"
AZ_METADATA_KEY = "availability_zone"
# Nova 34's MIN_COMPUTE_VERSION_OWNER_TRAIT: the nova-compute service version from which
# computes put OWNER_NOVA on the providers they manage.
MIN_COMPUTE_VERSION_OWNER_TRAIT = 73


class RequestFilterFailed(AllotmentError):
    """The request cannot be satisfied by any host; ``message`` says why."""


class RequestFilter(abc.ABC):
    """One pre-placement step. Subclasses set ``name`` (the entry-point name). ``placement``
    is the scheduler's placement client, for a filter that must look something up there
    (None where the pipeline is built without one, as in tests)."""

    name: ClassVar[str]

    def __init__(self, settings: Settings, placement: PlacementClient | None = None) -> None:
        self.settings = settings
        self.placement = placement

    @abc.abstractmethod
    def apply(
        self,
        ctx: RequestContext,
        spec: RequestSpec,
        request: ResourceRequest,
        snapshot: HostSnapshot,
        funnel: Funnel,
    ) -> None:
        """Add constraints to ``request``; record them in ``funnel``."""


class RequireTenantAggregate(RequestFilter):
    """``limit_tenants_to_placement_aggregate``: a project with aggregates tagged
    ``filter_tenant_id*=<project>`` may only land in those aggregates."""

    name = "require_tenant_aggregate"

    def apply(
        self,
        ctx: RequestContext,
        spec: RequestSpec,
        request: ResourceRequest,
        snapshot: HostSnapshot,
        funnel: Funnel,
    ) -> None:
        options = self.settings.scheduler
        if not options.limit_tenants_to_placement_aggregate:
            return
        uuids = {
            agg.uuid
            for agg in snapshot.aggregates
            if any(
                key.startswith(TENANT_METADATA_KEY) and value == spec.project_id
                for key, value in agg.metadata.items()
            )
        }
        if uuids:
            request.require_aggregates(uuids)
            funnel.record(self.name, "request_filter", member_of=sorted(uuids))
        elif options.placement_aggregate_required_for_tenants:
            raise RequestFilterFailed(
                f"No hosts available for tenant: no aggregate has {TENANT_METADATA_KEY}* = "
                "this project and [scheduler] placement_aggregate_required_for_tenants is true"
            )


class MapAzToPlacementAggregate(RequestFilter):
    """The requested availability zone becomes ``member_of`` the aggregates that define it.

    The default zone (``default_availability_zone``) is where hosts in no zone live, so
    when no aggregate names it, the request is kept out of every zone aggregate instead.
    Any other zone that no aggregate defines cannot be served.
    """

    name = "map_az_to_placement_aggregate"

    def apply(
        self,
        ctx: RequestContext,
        spec: RequestSpec,
        request: ResourceRequest,
        snapshot: HostSnapshot,
        funnel: Funnel,
    ) -> None:
        zone = spec.availability_zone
        if not zone or not self.settings.scheduler.query_placement_for_availability_zone:
            return
        uuids = {a.uuid for a in snapshot.aggregates_with(AZ_METADATA_KEY, zone)}
        if uuids:
            request.require_aggregates(uuids)
            funnel.record(
                self.name, "request_filter", member_of=sorted(uuids), availability_zone=zone
            )
            return
        if zone == self.settings.scheduler.default_availability_zone:
            zoned = {a.uuid for a in snapshot.aggregates_with(AZ_METADATA_KEY)}
            request.unsuffixed.forbidden_aggregates |= zoned
            funnel.record(
                self.name,
                "request_filter",
                forbidden_aggregates=sorted(zoned),
                availability_zone=zone,
            )
            return
        raise RequestFilterFailed(
            f"Availability zone {zone!r} does not exist: no aggregate has {AZ_METADATA_KEY}={zone}"
        )


class RequireImageTypeSupport(RequestFilter):
    """``query_placement_for_image_type_support``: require ``COMPUTE_IMAGE_TYPE_<format>``."""

    name = "require_image_type_support"

    def apply(
        self,
        ctx: RequestContext,
        spec: RequestSpec,
        request: ResourceRequest,
        snapshot: HostSnapshot,
        funnel: Funnel,
    ) -> None:
        if not self.settings.scheduler.query_placement_for_image_type_support:
            return
        if spec.is_bfv or spec.image is None or not spec.image.disk_format:
            return
        trait = f"COMPUTE_IMAGE_TYPE_{spec.image.disk_format.upper()}"
        if not hasattr(os_traits, trait):
            LOG.error("Computed trait name %r is not valid; is os-traits up to date?", trait)
            return
        request.root_required.add(trait)
        funnel.record(self.name, "request_filter", root_required=[trait])


class ComputeStatusFilter(RequestFilter):
    """Always: compute nodes of disabled services carry ``COMPUTE_STATUS_DISABLED``."""

    name = "compute_status_filter"

    def apply(
        self,
        ctx: RequestContext,
        spec: RequestSpec,
        request: ResourceRequest,
        snapshot: HostSnapshot,
        funnel: Funnel,
    ) -> None:
        request.root_forbidden.add(os_traits.COMPUTE_STATUS_DISABLED)


class IsolateAggregates(RequestFilter):
    """``enable_isolated_aggregate_filtering``: aggregates tagged ``trait:X=required`` only
    take requests that require X."""

    name = "isolate_aggregates"

    def apply(
        self,
        ctx: RequestContext,
        spec: RequestSpec,
        request: ResourceRequest,
        snapshot: HostSnapshot,
        funnel: Funnel,
    ) -> None:
        if not self.settings.scheduler.enable_isolated_aggregate_filtering:
            return
        wanted = {f"trait:{t}" for t in request.all_required_traits}
        isolated = {
            agg.uuid
            for agg in snapshot.aggregates
            if any(
                key.startswith("trait:") and value == "required" and key not in wanted
                for key, value in agg.metadata.items()
            )
        }
        if isolated:
            request.unsuffixed.forbidden_aggregates |= isolated
            funnel.record(self.name, "request_filter", forbidden_aggregates=sorted(isolated))


class TransformImageMetadata(RequestFilter):
    """``image_metadata_prefilter``: image properties (disk bus, video model, ...) become
    required traits on the root provider."""

    name = "transform_image_metadata"
    PREFIXES: ClassVar[dict[str, str]] = {
        "hw_cdrom_bus": "COMPUTE_STORAGE_BUS",
        "hw_disk_bus": "COMPUTE_STORAGE_BUS",
        "hw_video_model": "COMPUTE_GRAPHICS_MODEL",
        "hw_vif_model": "COMPUTE_NET_VIF_MODEL",
        "hw_architecture": "HW_ARCH",
        "hw_emulation_architecture": "COMPUTE_ARCH",
        "hw_viommu_model": "COMPUTE_VIOMMU",
    }

    def apply(
        self,
        ctx: RequestContext,
        spec: RequestSpec,
        request: ResourceRequest,
        snapshot: HostSnapshot,
        funnel: Funnel,
    ) -> None:
        if not self.settings.scheduler.image_metadata_prefilter:
            return
        props = spec.image_properties
        traits = []
        for key, prefix in self.PREFIXES.items():
            if key in props:
                trait = f"{prefix}_{str(props[key]).replace('-', '_').upper()}"
                if not hasattr(os_traits, trait):
                    # Nova's behaviour: one unknown value disables the whole prefilter.
                    LOG.error(
                        "Computed trait name %r is not valid; is os-traits up to date?", trait
                    )
                    return
                traits.append(trait)
        if traits:
            request.root_required.update(traits)
            funnel.record(self.name, "request_filter", root_required=traits)


class RoutedNetworksFilter(RequestFilter):
    """``query_placement_for_routed_network_aggregates``: each requested network, or port,
    keeps the instance where its Neutron segments are. Nova's ``routed_networks_filter``:

    - a port with fixed IPs: the segment of its first IP's subnet;
    - a port without, or a network: any segment of the network's subnets;
    - each segment is a placement provider; the aggregates it is in (the hosts Neutron
      maps to the segment) become one ``member_of`` any-of set per requested network,
      the sets AND'ed;
    - no ``segment`` extension in Neutron, or a network that is not routed (no subnet
      with a segment): no constraint.

    A segment that is in no aggregate, an unknown port, or a subnet or network Neutron
    will not answer for cannot be served (NoValidHost with the reason); Neutron down is a
    503 that names it. Neutron is reached with nova.conf's ``[neutron]`` credentials, so
    the option needs ``[nova] config_file``; unset, it takes nova.conf's own
    ``[scheduler]`` value."""

    name = "routed_networks_filter"

    def __init__(self, settings: Settings, placement: PlacementClient | None = None) -> None:
        super().__init__(settings, placement)
        self.neutron: NeutronClient | None = None
        enabled = settings.scheduler.query_placement_for_routed_network_aggregates
        path = settings.nova.config_file
        if enabled is False or (enabled is None and path is None):
            return
        if path is None:
            raise ConfigError(
                "[scheduler] query_placement_for_routed_network_aggregates needs [nova] "
                "config_file: Neutron is reached with nova.conf's [neutron] credentials"
            )
        from oslo_config import cfg

        from allotment.scheduler.nova.conf import read_nova_conf
        from allotment.scheduler.nova.neutron import NeutronClient

        conf = read_nova_conf(path)
        if enabled is None:
            option = cfg.BoolOpt("query_placement_for_routed_network_aggregates", default=False)
            conf.register_opt(option, group="scheduler")
            if not conf.scheduler.query_placement_for_routed_network_aggregates:
                return
        if placement is None:
            raise ConfigError(f"request filter {self.name} needs the scheduler's placement")
        self.neutron = NeutronClient(conf)

    def apply(
        self,
        ctx: RequestContext,
        spec: RequestSpec,
        request: ResourceRequest,
        snapshot: HostSnapshot,
        funnel: Funnel,
    ) -> None:
        if self.neutron is None:
            return
        for network in spec.requested_networks:
            try:
                aggregates, source = self._segment_aggregates(ctx, self.neutron, network)
            except NeutronRefused as exc:
                raise RequestFilterFailed(exc.message) from None
            if aggregates:
                request.require_aggregates(aggregates)
                funnel.record(
                    self.name, "request_filter", member_of=sorted(aggregates), network=source
                )

    def _segment_aggregates(
        self, ctx: RequestContext, neutron: NeutronClient, network: NetworkRequest
    ) -> tuple[set[str], str]:
        """The aggregates one requested network or port may use, and what they are for
        ("subnet <id>" / "network <id>"); empty when it may go anywhere."""
        network_id = network.network_id
        if network.port_id:
            port = neutron.show_port(ctx, network.port_id)
            if port.get("fixed_ips"):
                # The port is bound to its subnet; several IPs are of the same segment.
                subnet = str(port["fixed_ips"][0]["subnet_id"])
                try:
                    segment = neutron.segment_id_for_subnet(ctx, subnet)
                except NeutronRefused as exc:
                    raise RequestFilterFailed(
                        f"Aggregates not found for the subnet {subnet}: {exc.message}"
                    ) from None
                source = f"subnet {subnet}"
                return self._aggregates_of(ctx, [segment] if segment else [], source), source
            network_id = port.get("network_id")
        if not network_id:
            return set(), ""
        source = f"network {network_id}"
        try:
            segments = neutron.segment_ids_for_network(ctx, network_id)
        except NeutronRefused as exc:
            raise RequestFilterFailed(
                f"Aggregates not found for the network {network_id}: {exc.message}"
            ) from None
        return self._aggregates_of(ctx, segments, source), source

    def _aggregates_of(self, ctx: RequestContext, segments: list[str], source: str) -> set[str]:
        assert self.placement is not None  # checked when the filter was made
        found: set[str] = set()
        for segment in segments:
            aggregates = self.placement.provider_aggregates(ctx, segment)
            if not aggregates:
                raise RequestFilterFailed(
                    f"Aggregates not found for the {source}: segment {segment} is in no "
                    "placement aggregate"
                )
            found |= aggregates
        return found


class OwnerNovaFilter(RequestFilter):
    """Nova 34's ``owner_nova_filter``: once every nova-compute runs service version 73 or
    later (they then mark the providers they manage with ``OWNER_NOVA``), only Nova's own
    providers may serve: ``OWNER_NOVA`` is required on the root and on the groups of the
    instance's PCI devices, never on another service's (Cyborg's) providers.

    The minimum is Nova's, across every cell (``HostSnapshot.min_compute_version``): while
    any compute is older, or no host is a nova-compute (hosts reported over HTTP only),
    the trait is not required, so a mixed-version cloud keeps working."""

    name = "owner_nova_filter"
    # Nova warns on every request of a mixed-version cloud; once per minimum is enough.
    _warned_for: int | None = None

    def apply(
        self,
        ctx: RequestContext,
        spec: RequestSpec,
        request: ResourceRequest,
        snapshot: HostSnapshot,
        funnel: Funnel,
    ) -> None:
        if os_traits.OWNER_NOVA in request.root_required:
            return  # already asked for (a live-migration reschedule, say): Nova stops here
        minimum = snapshot.min_compute_version()
        if minimum < MIN_COMPUTE_VERSION_OWNER_TRAIT:
            if minimum and minimum != self._warned_for:
                LOG.warning(
                    "OWNER_NOVA trait not added to scheduling requests: not all nova-compute "
                    "services are upgraded (min_version=%d, need %d)",
                    minimum,
                    MIN_COMPUTE_VERSION_OWNER_TRAIT,
                )
            self._warned_for = minimum
            return
        request.root_required.add(os_traits.OWNER_NOVA)
        # Nova's PCI groups are named "<pci request id>-<n>"; a port's PCI request
        # (no alias) has no group of its own.
        pci_ids = {r.request_id for r in spec.pci_requests if r.alias_name and r.request_id}
        groups = sorted(
            suffix
            for suffix in request.groups
            if suffix.startswith(PCI_GROUP_PREFIX) or suffix.rsplit("-", 1)[0] in pci_ids
        )
        for suffix in groups:
            request.groups[suffix].require_trait(os_traits.OWNER_NOVA)
        detail: dict[str, Any] = {"root_required": [os_traits.OWNER_NOVA]}
        if groups:
            detail["groups_required"] = groups
        funnel.record(self.name, "request_filter", min_compute_version=minimum, **detail)
