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
from typing import ClassVar

import os_traits

from allotment.config import Settings
from allotment.context import RequestContext
from allotment.errors import AllotmentError
from allotment.scheduler.explain import Funnel
from allotment.scheduler.request import RequestSpec
from allotment.scheduler.resource_request import ResourceRequest
from allotment.scheduler.snapshot import HostSnapshot

LOG = logging.getLogger(__name__)

TENANT_METADATA_KEY = "filter_tenant_id"
AZ_METADATA_KEY = "availability_zone"


class RequestFilterFailed(AllotmentError):
    """The request cannot be satisfied by any host; ``message`` says why."""


class RequestFilter(abc.ABC):
    """One pre-placement step. Subclasses set ``name`` (the entry-point name)."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

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
