"""The scheduling pipeline, assembled once from configuration: request filters, host
filters and weighers, by name, from entry points.

``select_destinations`` uses it in three steps::

    prepared = pipeline.prepare(ctx, spec, snapshot)   # -> prepared.resources for placement
    cycle = pipeline.start(prepared, snapshot, candidates, instance_uuids)
    for uuid in instance_uuids:
        for host in cycle.next_hosts(uuid):            # claim in this order
            ...                                        # on success: cycle.consume(...)

Every stage records into ``prepared.funnel``; a NoValidHost raised anywhere carries the
explanation built from it.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

from allotment.config import Settings
from allotment.context import RequestContext
from allotment.errors import NoValidHost
from allotment.scheduler import plugins
from allotment.scheduler.cycle.driver import Cycle, PreparedRequest
from allotment.scheduler.explain import Explanation, Funnel, with_tally
from allotment.scheduler.framework import HostFilter, HostWeigher, build_options
from allotment.scheduler.numa import InstanceCell, NumaRequest, cpu_constraints, numa_request
from allotment.scheduler.pci import PciRequest, pci_requests
from allotment.scheduler.pci import from_request_spec as pci_from_spec
from allotment.scheduler.placement import Candidates, PlacementClient
from allotment.scheduler.request import RequestSpec
from allotment.scheduler.request_filters import RequestFilter, RequestFilterFailed
from allotment.scheduler.resource_request import ResourceRequest, apply_destination
from allotment.scheduler.snapshot import HostSnapshot

LOG = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        request_filters: Sequence[RequestFilter],
        filters: Sequence[HostFilter],
        weighers: Sequence[HostWeigher],
    ) -> None:
        self.settings = settings
        self.request_filters = list(request_filters)
        self.filters = list(filters)
        self.weighers = list(weighers)

    @classmethod
    def from_settings(
        cls, settings: Settings, placement: PlacementClient | None = None
    ) -> Pipeline:
        """Load every configured plugin; raises ConfigError listing valid names.
        ``placement`` is handed to the request filters that look things up there."""
        allowed = settings.plugins.allowed
        request_filters = plugins.load(
            plugins.REQUEST_FILTERS,
            settings.scheduler.request_filters,
            allowed,
            RequestFilter,
            "[scheduler] request_filters",
        )
        filters = plugins.load(
            plugins.FILTERS,
            settings.filter_scheduler.enabled_filters,
            allowed,
            HostFilter,
            "[filter_scheduler] enabled_filters",
        )
        weigher_names: list[str] = []
        for name in settings.filter_scheduler.weight_classes:
            expanded = plugins.builtin_names(plugins.WEIGHERS) if name == "all" else [name]
            weigher_names += [n for n in expanded if n not in weigher_names]
        weighers = plugins.load(
            plugins.WEIGHERS,
            weigher_names,
            allowed,
            HostWeigher,
            "[filter_scheduler] weight_classes",
        )

        def read(path: str) -> Any:
            return functools.reduce(getattr, path.split("."), settings)

        return cls(
            settings,
            [c(settings, placement) for c in request_filters],
            [c(build_options(c.options_type, read)) for c in filters],
            [c(build_options(c.options_type, read)) for c in weighers],
        )

    def prepare(
        self, ctx: RequestContext, spec: RequestSpec, snapshot: HostSnapshot
    ) -> PreparedRequest:
        """Translate the request and run the request filters: the placement query is
        ``prepared.resources``. Raises InvalidInput for a malformed flavor/image and an
        explained NoValidHost when a request filter rules every host out."""
        funnel = Funnel()
        resources = ResourceRequest.from_spec(spec, self.settings)
        numa, pci = self.host_requests(spec)
        for request_filter in self.request_filters:
            try:
                request_filter.apply(ctx, spec, resources, snapshot, funnel)
            except RequestFilterFailed as exc:
                funnel.record(request_filter.name, "request_filter", after=0, reason=exc.message)
                summary = f"No valid host was found: {exc.message}."
                raise NoValidHost(
                    summary, explanation=Explanation(summary, funnel).to_dict()
                ) from None
        apply_destination(resources, spec, snapshot, funnel)
        return PreparedRequest(spec, resources, numa, pci, funnel)

    def host_requests(self, spec: RequestSpec) -> tuple[NumaRequest | None, list[PciRequest]]:
        """What the NUMA and PCI filters check on each host for this request: PCI
        requests from the spec when it carries them (Nova's), else from the flavor's alias.

        A NUMA topology in the spec (what nova-api computed, and conductor recomputes for
        a resize) is used as Nova's NUMATopologyFilter uses it: its cells, with the CPU
        policy the flavor and image give."""
        flavor = spec.flavor
        numa = numa_request(flavor.vcpus, flavor.memory_mb, spec.extra_specs, spec.image_properties)
        topology = spec.numa_topology
        if topology is not None and topology.cells:
            cpu = cpu_constraints(flavor.vcpus, spec.extra_specs, spec.image_properties)
            cells = tuple(
                InstanceCell(
                    cell.id,
                    frozenset(cell.cpuset) | frozenset(cell.pcpuset),
                    frozenset(cell.pcpuset),
                    cell.memory,
                )
                for cell in topology.cells
            )
            numa = NumaRequest(cells, cpu)
        if spec.pci_requests:
            # Nova resolved the aliases with its own [pci] alias (and added SR-IOV ports).
            return numa, pci_from_spec(spec.pci_requests)
        return numa, pci_requests(spec.extra_specs, self.settings.pci.alias, spec.image_properties)

    def start(
        self,
        prepared: PreparedRequest,
        snapshot: HostSnapshot,
        candidates: Candidates,
        instance_uuids: Sequence[str] = (),
        *,
        now: float | None = None,
        rng: random.Random | None = None,
    ) -> Cycle:
        """A cycle over the hosts placement returned, for the instances of the request."""
        return Cycle(
            self.settings,
            self.filters,
            self.weighers,
            prepared,
            snapshot,
            candidates,
            instance_uuids,
            now=time.time() if now is None else now,
            rng=rng,
        )

    @staticmethod
    def placement_failed(
        prepared: PreparedRequest, summary: str, *, before: int | None = None, **detail: Any
    ) -> NoValidHost:
        """The NoValidHost for "placement returned no candidates" (or could not be asked):
        ``before`` is how many providers placement considered, ``detail`` which resource
        class, trait or aggregate removed how many."""
        prepared.funnel.record("placement", "placement", before, 0, **detail)
        summary = with_tally(summary, prepared.funnel)
        explanation = Explanation(summary, prepared.funnel)
        return NoValidHost(summary, explanation=explanation.to_dict())
