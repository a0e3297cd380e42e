"""The scheduler: where instances go.

``SchedulerManager.select_destinations(ctx, spec, instance_uuids, return_alternates=...)``
is the decision with its claims (``explain`` the same without claims); it reaches placement
through a ``PlacementClient`` (``allotment.client.placement_local`` in-process,
``allotment.client.placement_http`` over HTTP).

The pieces it is made of (see ``pipeline`` for the call sequence):

- ``Pipeline.from_settings(settings)``: request filters, host filters and weighers loaded
  by name (entry points, allow-listed); ConfigError at start-up for bad names.
- ``Pipeline.prepare(ctx, spec, snapshot) -> Prepared``: the placement query
  (``prepared.resources``) after flavor/image translation and the request filters.
- ``Pipeline.start(prepared, snapshot, candidates, instance_uuids) -> Cycle``; then per
  instance ``Cycle.next_hosts(uuid) -> Ranking`` (claim in its order),
  ``Cycle.consume(position, uuid)`` after a successful claim, ``Cycle.alternates(...)``.
- ``HostManager``: the host state cache (``snapshot()``, host reports, aggregates,
  instance info, ``reset``).
"""

from allotment.scheduler.cycle import Candidates, Cycle, HostChoice, Prepared, Ranking
from allotment.scheduler.explain import Explanation, Funnel
from allotment.scheduler.manager import SchedulerManager, Selection
from allotment.scheduler.pipeline import Pipeline
from allotment.scheduler.placement import PlacementClient
from allotment.scheduler.request import RequestSpec, parse_request_spec
from allotment.scheduler.resource_request import RequestGroup, ResourceRequest
from allotment.scheduler.snapshot import HostSnapshot

__all__ = [
    "Candidates",
    "Cycle",
    "Explanation",
    "Funnel",
    "HostChoice",
    "HostSnapshot",
    "Pipeline",
    "PlacementClient",
    "Prepared",
    "Ranking",
    "RequestGroup",
    "RequestSpec",
    "ResourceRequest",
    "SchedulerManager",
    "Selection",
    "parse_request_spec",
]
