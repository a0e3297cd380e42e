"""The scheduler: where instances go.

``SchedulerManager.select_destinations(ctx, spec, instance_uuids, return_alternates=...)``
(``manager``) is the decision with its claims (``explain`` the same without claims); it
reaches placement through a ``PlacementClient`` (``placement``; implemented by
``allotment.client.placement_local`` in-process and ``allotment.client.placement_http``
over HTTP).

The pieces it is made of (see ``pipeline`` for the call sequence):

- ``Pipeline.from_settings(settings)``: request filters, host filters and weighers loaded
  by name (entry points, allow-listed); ConfigError at start-up for bad names.
- ``Pipeline.prepare(ctx, spec, snapshot) -> PreparedRequest``: the placement query
  (``prepared.resources``) after flavor/image translation and the request filters.
- ``Pipeline.start(prepared, snapshot, candidates, instance_uuids) -> Cycle``
  (``cycle.driver``); then per instance ``Cycle.next_hosts(uuid) -> Ranking`` (claim in
  its order), ``Cycle.consume(position, uuid)`` after a successful claim,
  ``Cycle.alternates(...)``.
- ``framework``: the only module filters and weighers import (``HostView``,
  ``CycleState``, ``HostFilter``, ``HostWeigher``, ``Verdict``).
- ``HostManager`` (``host_manager``): the host state cache (``snapshot()``, host reports,
  aggregates, instance info, ``reset``).

Import from the modules themselves; this package re-exports nothing, so importing one
part never drags in the others.
"""
