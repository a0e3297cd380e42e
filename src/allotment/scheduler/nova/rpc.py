"""Nova's scheduler RPC API 4.5 on oslo.messaging: the door nova-conductor, nova-api and
nova-compute knock on.

The server listens where nova-scheduler would (exchange ``nova``, topic ``scheduler``, on
nova.conf's ``transport_url``) and calls the same SchedulerManager and HostManager as the
HTTP door, with Nova's objects decoded into our models (``objects.py``). What each RPC
version sends (Nova's ``scheduler/rpcapi.py``):

- 4.5: ``select_destinations(spec_obj, instance_uuids, return_objects, return_alternates)``
  answered with lists of Selection objects (or, without ``return_objects``, 4.4's dicts);
- 4.4: ``spec_obj, instance_uuids``: claims made, answered with host dicts;
- 4.3: ``spec_obj`` only: no instance uuids to claim for, so the hosts are chosen without
  claiming (as Nova does) and answered with host dicts;
- 4.0: the legacy ``request_spec`` / ``filter_properties`` dicts (Nova 34 still sends
  them under a pin below 4.3): decoded as Nova's ``RequestSpec.from_primitives`` reads
  them, chosen without claiming (no instance uuids) and answered with host dicts;
- casts (fanout): ``update_aggregates``, ``delete_aggregate`` (4.1), ``update_instance_info``,
  ``delete_instance_info``, ``sync_instance_info`` (4.2).

Anyone who can publish on Nova's message bus holds the bus credentials Nova's services
hold, so a caller is trusted as a service: its context keeps the user's roles, project,
user and request ids, and gains the ``service`` role (Nova's scheduler does no policy
check on RPC either). The call monitor (``_timeout`` in a call, sent by Nova 34) is
answered by oslo.messaging's RPC server with heartbeats while a call runs.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import oslo_messaging
from oslo_config import cfg

from allotment import errors, log
from allotment.config import Settings
from allotment.context import RequestContext
from allotment.scheduler.decision import Selection
from allotment.scheduler.host_manager import HostManager
from allotment.scheduler.manager import SchedulerManager
from allotment.scheduler.nova import objects
from allotment.scheduler.nova.conf import read_nova_conf

LOG = logging.getLogger(__name__)
EXCHANGE = "nova"
TOPIC = "scheduler"
RPC_API_VERSION = "4.5"
# The placement microversion of the allocation requests we hand Nova: the one Nova 34's
# report client asks candidates at (same_subtree), so conductor's claim_resources can PUT
# them back as they are (1.38+ would need a consumer_type Nova does not send).
NOVA_ALLOCATION_REQUEST_VERSION = "1.36"
_UNSET = object()


class NoValidHost(Exception):
    """Raised to a Nova caller as ``nova.exception.NoValidHost``: oslo.messaging names the
    remote exception by module and class, and Nova rebuilds its own from them."""


# Nova's callers allow remote exceptions from this module and rebuild them by name.
NoValidHost.__module__ = "nova.exception"


class RequestRefused(Exception):
    """A request this server cannot answer: an unsupported form, an undecodable object,
    a refused request (sent back as a remote error with the reason)."""


def to_context(ctxt: Any) -> RequestContext:
    """Our RequestContext from the dict of a Nova RequestContext (``to_dict()``)."""
    data = ctxt if isinstance(ctxt, dict) else {}
    roles = {str(r) for r in data.get("roles") or []}
    if data.get("is_admin"):
        roles.add("admin")
    roles.add("service")  # the caller is on Nova's message bus: see the module docstring
    request_id = data.get("request_id") or f"req-{uuidlib.uuid4()}"
    return RequestContext(
        user_id=data.get("user_id") or data.get("user"),
        project_id=data.get("project_id") or data.get("project") or data.get("tenant"),
        roles=frozenset(roles),
        request_id=str(request_id),
        global_request_id=data.get("global_request_id"),
        system_scope=data.get("system_scope"),
    )


class ContextSerializer(oslo_messaging.NoOpSerializer):  # type: ignore[misc]
    """Contexts arrive as Nova's dict and become ours; arguments stay primitives (the
    endpoint decodes them, knowing which object each one is)."""

    def serialize_context(self, ctxt: Any) -> Any:
        if isinstance(ctxt, RequestContext):
            return {
                "user_id": ctxt.user_id,
                "project_id": ctxt.project_id,
                "roles": sorted(ctxt.roles),
                "request_id": ctxt.request_id,
                "global_request_id": ctxt.global_request_id,
            }
        return ctxt

    def deserialize_context(self, ctxt: Any) -> RequestContext:
        return to_context(ctxt)


def _check_context(ctx: Any) -> RequestContext:
    if not isinstance(ctx, RequestContext):
        raise RequestRefused("the call carried no request context")
    return ctx


class SchedulerEndpoint:
    """The methods of Nova's SchedulerManager, over ours."""

    target = oslo_messaging.Target(version=RPC_API_VERSION)

    def __init__(self, settings: Settings, manager: SchedulerManager, hosts: HostManager) -> None:
        self.settings = settings
        self.manager = manager
        self.hosts = hosts

    # -- the call --------------------------------------------------------------------------

    @oslo_messaging.expected_exceptions(NoValidHost, RequestRefused)  # type: ignore[untyped-decorator]
    def select_destinations(
        self,
        ctxt: Any,
        request_spec: Any = None,
        filter_properties: Any = None,
        spec_obj: Any = _UNSET,
        instance_uuids: list[str] | None = None,
        return_objects: bool = False,
        return_alternates: bool = False,
    ) -> Any:
        ctx = _check_context(ctxt)
        with log.request_context(ctx):
            try:
                if spec_obj is _UNSET:
                    spec = objects.decode_legacy_request_spec(request_spec, filter_properties)
                else:
                    spec = objects.decode_request_spec(spec_obj)
            except errors.InvalidInput as exc:
                raise RequestRefused(exc.message) from None
            LOG.info(
                "select_destinations over RPC for %d instance(s) (global request id %s%s)",
                len(instance_uuids) if instance_uuids else spec.num_instances,
                ctx.global_request_id or "-",
                "" if instance_uuids else "; no instance uuids: choosing without claiming",
            )
            try:
                if instance_uuids:
                    chosen = self._claimed(ctx, spec, instance_uuids, return_alternates)
                else:
                    chosen = self._unclaimed(ctx, spec)
            except errors.NoValidHost as exc:
                raise self._no_valid_host(exc) from None
            except errors.AllotmentError as exc:
                raise RequestRefused(exc.message) from None
            if not return_objects:
                return [choices[0].to_host_dict() for choices in chosen]
            return [[s.to_primitive() for s in choices] for choices in chosen]

    def _claimed(
        self,
        ctx: RequestContext,
        spec: Any,
        instance_uuids: list[str],
        return_alternates: bool,
    ) -> list[list[objects.NovaSelection]]:
        found = self.manager.select_destinations(
            ctx, spec, instance_uuids, return_alternates=return_alternates
        )
        cell, zone = self._cells(spec), self._zones()
        return [[self._selection(s, cell, zone) for s in choices] for choices in found]

    def _unclaimed(self, ctx: RequestContext, spec: Any) -> list[list[objects.NovaSelection]]:
        """4.3: where each of ``num_instances`` would go, claiming nothing."""
        started = time.perf_counter()
        uuids = [str(uuidlib.uuid4()) for _ in range(spec.num_instances)]
        answer = self.manager.explain(ctx, spec, uuids, hosts=0)
        if answer["result"] != "ok":
            explanation = answer["explanation"]
            refusal = errors.NoValidHost(explanation.get("summary", ""), explanation=explanation)
            # A refusal Nova acts on, as select_destinations' own: counted and logged once.
            self.manager.no_valid_host(refusal, started)
            raise self._no_valid_host(refusal)
        cell = self._cells(spec)
        zones = self._zones()
        return [
            [
                objects.NovaSelection(
                    service_host=placed["host"],
                    nodename=placed["nodename"],
                    compute_node_uuid=placed["compute_node_uuid"],
                    cell_uuid=cell(placed["compute_node_uuid"]),
                    allocation_request=None,
                    allocation_request_version=None,
                    limits={},
                    availability_zone=zones(placed["compute_node_uuid"]),
                )
            ]
            for placed in answer["instances"]
        ]

    def _no_valid_host(self, exc: errors.NoValidHost) -> NoValidHost:
        explanation = exc.extra.get("explanation", {})
        # The summary was logged at INFO by the manager; the whole explanation names hosts.
        LOG.debug("no valid host: %s", orjson.dumps(explanation).decode())
        return NoValidHost(exc.message.splitlines()[0] if exc.message else "")

    def _cells(self, spec: Any) -> Callable[[str], str]:
        """compute node uuid -> the cell its Selection names: the requested cell, else the
        node's own (read from Nova's cell databases), else ``[nova] cell_uuid``."""
        destination = spec.requested_destination
        if destination is not None and destination.cell is not None:
            requested = str(destination.cell.uuid)
            return lambda node_uuid: requested
        snapshot = self.hosts.snapshot()
        default = self.settings.nova.cell_uuid

        def cell(node_uuid: str) -> str:
            row = snapshot.row_of_uuid.get(node_uuid)
            found = None if row is None else snapshot.records[row].report.cell_uuid
            if found is not None:
                return found
            if default:
                return default
            raise RequestRefused(
                "no cell to name in the Selection: the host's cell is not known (no host "
                "state from Nova's databases); set [nova] cell_uuid to the cell of the hosts"
            )

        return cell

    def _zones(self) -> Callable[[str], str | None]:
        """compute node uuid -> its availability zone (as Nova's Selection names it)."""
        snapshot = self.hosts.snapshot()
        default = self.settings.scheduler.default_availability_zone

        def zone(node_uuid: str) -> str | None:
            row = snapshot.row_of_uuid.get(node_uuid)
            if row is None:
                return default
            found = snapshot.aggregate_values(int(snapshot.aggregate_set[row]), "availability_zone")
            return sorted(found)[0] if found else default

        return zone

    def _selection(
        self,
        selection: Selection,
        cell: Callable[[str], str],
        zone: Callable[[str], str | None],
    ) -> objects.NovaSelection:
        request = selection.allocation_request  # None: a rebuild check, nothing to claim
        return objects.NovaSelection(
            service_host=selection.host,
            nodename=selection.nodename,
            compute_node_uuid=selection.compute_node_uuid,
            cell_uuid=cell(selection.compute_node_uuid),
            allocation_request=None if request is None else request.to_dict(),
            allocation_request_version=None if request is None else NOVA_ALLOCATION_REQUEST_VERSION,
            limits=selection.limits,
            availability_zone=zone(selection.compute_node_uuid),
        )

    # -- the fanout casts ------------------------------------------------------------------

    def update_aggregates(self, ctxt: Any, aggregates: Any) -> None:
        ctx = _check_context(ctxt)
        with log.request_context(ctx):
            for aggregate in objects.decode_aggregates(aggregates):
                self.hosts.update_aggregate(ctx, aggregate.uuid, aggregate.body)

    def delete_aggregate(self, ctxt: Any, aggregate: Any) -> None:
        ctx = _check_context(ctxt)
        with log.request_context(ctx):
            found = objects.decode_aggregate(aggregate)
            try:
                self.hosts.delete_aggregate(ctx, found.uuid)
            except errors.NotFound:
                LOG.info("aggregate %s to delete was not known", found.uuid)

    def update_instance_info(self, ctxt: Any, host_name: str, instance_info: Any) -> None:
        ctx = _check_context(ctxt)
        with log.request_context(ctx):
            infos = objects.decode_instance_info(instance_info)
            self.hosts.update_instance_info(ctx, host_name, infos)

    def delete_instance_info(self, ctxt: Any, host_name: str, instance_uuid: str) -> None:
        ctx = _check_context(ctxt)
        with log.request_context(ctx):
            self.hosts.delete_instance_info(ctx, host_name, instance_uuid)

    def sync_instance_info(self, ctxt: Any, host_name: str, instance_uuids: list[str]) -> None:
        ctx = _check_context(ctxt)
        with log.request_context(ctx):
            self.hosts.sync_instance_info(ctx, host_name, list(instance_uuids))


def _register_tracing_options(conf: cfg.ConfigOpts) -> None:
    """oslo.messaging 18 registers its tracing options on the global CONF only, yet its
    RPC server reads them from the transport's own: ours must carry them too, or every
    message fails before dispatch."""
    try:
        from oslo_messaging._tracing import client as tracing
    except ImportError:  # a version without tracing reads no such options
        return
    conf.register_opts(tracing.oslo_messaging_tracing, group="oslo_messaging_tracing")


def load_nova_conf(path: Path) -> cfg.ConfigOpts:
    """The operator's nova.conf, as oslo.config reads it (the transport options are
    registered by oslo.messaging when the transport is made)."""
    conf = read_nova_conf(path)
    conf.register_opt(cfg.StrOpt("host", default=socket.gethostname()))
    _register_tracing_options(conf)
    return conf


class NovaRpcServer:
    """The RPC server as a background task of the app: started and stopped with it."""

    def __init__(self, settings: Settings, manager: SchedulerManager, hosts: HostManager) -> None:
        path = settings.nova.config_file
        if path is None:
            raise errors.ConfigError("nova.config_file is needed to serve Nova's RPC API")
        self.conf = load_nova_conf(path)
        self.settings = settings
        self.endpoint = SchedulerEndpoint(settings, manager, hosts)
        self.host = settings.nova.host or self.conf.host
        self._transport: Any = None
        self._server: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            try:
                self._transport = oslo_messaging.get_rpc_transport(self.conf)
            except (oslo_messaging.InvalidTransportURL, oslo_messaging.DriverLoadFailure) as exc:
                raise errors.ConfigError(f"nova.conf [DEFAULT] transport_url: {exc}") from None
            target = oslo_messaging.Target(exchange=EXCHANGE, topic=TOPIC, server=self.host)
            self._server = oslo_messaging.get_rpc_server(
                self._transport,
                target,
                [self.endpoint],
                executor="threading",
                serializer=ContextSerializer(),
                access_policy=oslo_messaging.DefaultRPCAccessPolicy,
            )
            dispatchers = self._dispatchers()
            self._server.start(override_pool_size=dispatchers)
            LOG.info(
                "serving Nova's scheduler RPC API %s (exchange %s, topic %s, server %s, "
                "%d dispatch threads)",
                RPC_API_VERSION,
                EXCHANGE,
                TOPIC,
                self.host,
                dispatchers,
            )

    def _dispatchers(self) -> int:
        """How many threads run calls at once. oslo.messaging's threading executor starts
        a new thread for every message until it has ``executor_thread_pool_size`` (64) of
        them, and each thread keeps a reading and a writing database connection of its own
        (``db/database.py``): more threads than the pool can serve would wait 30 s for a
        connection instead of deciding. Half the pool, so the HTTP APIs and the periodic
        tasks keep theirs; concurrent calls are decided together by the manager anyway."""
        wanted: int = self.conf.executor_thread_pool_size
        return max(1, min(wanted, self.settings.database.pool_size // 2))

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server.wait()
                self._server = None
            if self._transport is not None:
                self._transport.cleanup()
                self._transport = None
