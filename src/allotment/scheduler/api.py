"""The scheduler HTTP API (``/scheduler/v1`` by default): ``select_destinations`` and
``explain`` (the SchedulerManager), and the host-state routes that feed the HostManager.
Each handler validates the body, calls one method with the request's context, and shapes
the answer; the manager called checks roles and logs.

The decision routes run in a worker thread: they wait on placement (a remote one, or the
database's durable commit) and must not hold up the event loop meanwhile.

Errors use the same body as Placement's (``{"errors": [{..., "code", "request_id"}]}``),
always with the error code.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from allotment import errors, jsonparse
from allotment.context import RequestContext
from allotment.scheduler.capacity import CapacityRequest
from allotment.scheduler.capacity import capacity as capacity_of
from allotment.scheduler.host_manager import HostManager
from allotment.scheduler.manager import MAX_INSTANCES, SchedulerManager
from allotment.scheduler.records import AggregateBody, HostRecord, HostReport, InstanceInfo, parse
from allotment.scheduler.request import RequestSpec, parse_request_spec
from allotment.web import JSON, dumps, error_response, set_route, status_of

LOG = logging.getLogger(__name__)
Handler = Callable[["SchedulerAPI", RequestContext, dict[str, str], Any], Response]


def _json(data: Any, status: int = 200) -> Response:
    return Response(dumps(data), status, media_type=JSON)


def _record(record: HostRecord) -> dict[str, Any]:
    return {
        "host": record.host,
        "nodename": record.nodename,
        "compute_node_uuid": record.uuid,
        "disabled": record.report.disabled,
    }


def _body_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.InvalidInput(f"The {what} body must be a JSON object.")
    return body


def put_host(api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any) -> Response:
    """A compute node's state (the host report); also its heartbeat."""
    report = parse(HostReport, body, "host report")
    return _json(_record(api.host_manager.report_host(ctx, params["host"], report)))


def list_hosts(
    api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    """Every compute node the scheduler knows: up or down, disabled, aggregates, instances."""
    return _json({"hosts": [status.to_dict() for status in api.host_manager.list_hosts(ctx)]})


def show_host(
    api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    """One host: each of its nodes with its status and last report, and its instances."""
    nodes, instances = api.host_manager.show_host(ctx, params["host"])
    return _json(
        {
            "host": params["host"],
            "nodes": [
                {**status.to_dict(), "report": record.report.model_dump(mode="json")}
                for status, record in nodes
            ],
            "instance_uuids": instances,
        }
    )


def delete_host(
    api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    """Forget a host taken out of service: its nodes, heartbeats and instance records."""
    api.host_manager.delete_host(ctx, params["host"])
    return Response(status_code=204)


def put_aggregate(
    api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    """Create or replace a host aggregate (Nova's update_aggregates), mirrored in placement."""
    aggregate = api.host_manager.update_aggregate(
        ctx, params["uuid"], parse(AggregateBody, body, "aggregate")
    )
    return _json(
        {
            "uuid": aggregate.uuid,
            "name": aggregate.name,
            "hosts": sorted(aggregate.hosts),
            "metadata": aggregate.metadata,
        }
    )


def delete_aggregate(
    api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    """Delete a host aggregate (Nova's delete_aggregate)."""
    api.host_manager.delete_aggregate(ctx, params["uuid"])
    return Response(status_code=204)


def put_instances(
    api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    """These instances are on the host, added or updated (Nova's update_instance_info)."""
    items = _body_object(body, "instances").get("instances")
    if not isinstance(items, list):
        raise errors.InvalidInput('The body must be {"instances": [{"uuid": ...}, ...]}.')
    infos = [parse(InstanceInfo, item, f"instances[{i}]") for i, item in enumerate(items)]
    api.host_manager.update_instance_info(ctx, params["host"], infos)
    return Response(status_code=204)


def delete_instance(
    api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    """The instance is gone from the host (Nova's delete_instance_info)."""
    api.host_manager.delete_instance_info(ctx, params["host"], params["uuid"])
    return Response(status_code=204)


def sync_instances(
    api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    """The host's complete instance list; the cache is made to match (sync_instance_info)."""
    uuids = _body_object(body, "sync").get("instance_uuids")
    if not isinstance(uuids, list) or not all(isinstance(u, str) for u in uuids):
        raise errors.InvalidInput('The body must be {"instance_uuids": ["<uuid>", ...]}.')
    try:
        result = api.host_manager.sync_instance_info(ctx, params["host"], uuids)
    except ValueError as exc:
        raise errors.InvalidInput(f"Invalid instance_uuids: {exc}") from None
    return _json({"in_sync": result.in_sync, "added": result.added, "removed": result.removed})


def reset(api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any) -> Response:
    """Rebuild the host cache from the database (admin only; SIGHUP does the same)."""
    if not ctx.is_admin:
        raise errors.Forbidden("Resetting the host cache needs the admin role.")
    snapshot = api.host_manager.reset(ctx)
    return _json({"generation": snapshot.generation, "hosts": len(snapshot)})


def _decision_body(
    body: Any, extra: tuple[str, ...] = ()
) -> tuple[list[str], RequestSpec, dict[str, Any]]:
    """The ``select_destinations`` / ``explain`` body: instance uuids, request spec, and
    the optional members (``return_alternates`` and ``extra``)."""
    data = _body_object(body, "select_destinations")
    allowed = {"instance_uuids", "request_spec", "return_alternates", *extra}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise errors.InvalidInput(
            f"Unknown member(s) {', '.join(unknown)}; the body takes {', '.join(sorted(allowed))}."
        )
    if "request_spec" not in data:
        raise errors.InvalidInput("The body needs a request_spec.")
    uuids = data.get("instance_uuids")
    if not isinstance(uuids, list) or not 1 <= len(uuids) <= MAX_INSTANCES:
        raise errors.InvalidInput(
            f"instance_uuids must be a list of 1 to {MAX_INSTANCES} instance UUIDs, one per "
            "instance to place."
        )
    options = {key: data[key] for key in ("return_alternates", *extra) if key in data}
    if not isinstance(options.get("return_alternates", False), bool):
        raise errors.InvalidInput("return_alternates must be true or false.")
    return uuids, parse_request_spec(data["request_spec"]), options


def select_destinations(
    api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    """Place 1 to 1,000 instances, all or nothing, claiming each in placement."""
    api.manager.authorize(ctx, "scheduler:select_destinations")  # before looking at the body
    uuids, spec, options = _decision_body(body)
    selections = api.manager.select_destinations(
        ctx, spec, uuids, return_alternates=options.get("return_alternates", False)
    )
    return _json({"selections": [[s.to_dict() for s in chosen] for chosen in selections]})


def explain(api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any) -> Response:
    """The decision select_destinations would make now, claiming nothing: funnel and ranking."""
    api.manager.authorize(ctx, "scheduler:explain")
    uuids, spec, options = _decision_body(body, ("hosts",))
    hosts = options.get("hosts", 50)
    if not isinstance(hosts, int) or isinstance(hosts, bool) or not 0 <= hosts <= 1000:
        raise errors.InvalidInput("hosts (how many ranked hosts to show) must be 0 to 1000.")
    return _json(api.manager.explain(ctx, spec, uuids, hosts=hosts))


def capacity(api: SchedulerAPI, ctx: RequestContext, params: dict[str, str], body: Any) -> Response:
    """How many more instances of each flavor fit now, per availability zone and in total."""
    api.manager.authorize(ctx, "scheduler:capacity")
    request = parse(CapacityRequest, body, "capacity request")
    found = capacity_of(
        api.manager,
        ctx,
        request.flavors,
        availability_zone=request.availability_zone,
        project_id=request.project_id,
        image=request.image,
    )
    return _json({"flavors": [f.to_dict(request.hosts) for f in found]})


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/select_destinations", select_destinations),
    ("POST", "/explain", explain),
    ("GET", "/hosts", list_hosts),
    ("GET", "/hosts/{host}", show_host),
    ("PUT", "/hosts/{host}", put_host),
    ("DELETE", "/hosts/{host}", delete_host),
    ("PUT", "/hosts/{host}/instances", put_instances),
    ("DELETE", "/hosts/{host}/instances/{uuid}", delete_instance),
    ("POST", "/hosts/{host}/instances/sync", sync_instances),
    ("PUT", "/aggregates/{uuid}", put_aggregate),
    ("DELETE", "/aggregates/{uuid}", delete_aggregate),
    ("POST", "/capacity", capacity),
    ("POST", "/reset", reset),
]


# Handlers that wait on placement, walk every host, or write (a write waits for the host
# cache's write lock, which the sync thread holds while it reads the change log, and for
# its own transaction): run in a worker thread, so the event loop never waits on SQL.
_THREADED = frozenset(
    {
        select_destinations,
        explain,
        capacity,
        list_hosts,
        put_host,
        delete_host,
        put_instances,
        delete_instance,
        sync_instances,
        put_aggregate,
        delete_aggregate,
        reset,
    }
)


class SchedulerAPI:
    """ASGI app for the scheduler prefix; ``prefix`` is stripped before routing."""

    def __init__(self, host_manager: HostManager, manager: SchedulerManager, prefix: str) -> None:
        self.host_manager = host_manager
        self.manager = manager
        self.prefix = prefix.rstrip("/")
        self.routes = [
            (method, re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)), path, handler)
            for method, path, handler in ROUTES
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        ctx: RequestContext = scope["state"]["context"]
        path = scope["path"][len(self.prefix) :] or "/"
        try:
            response = await self._dispatch(request, ctx, path)
        except errors.AllotmentError as exc:
            if status_of(exc) >= 500:
                LOG.error("%s %s failed: %s", scope["method"], scope["path"], exc.message)
            response = error_response(
                exc, request_id=ctx.request_id, with_code=True, method=scope["method"]
            )
        await response(scope, receive, send)

    async def _dispatch(self, request: Request, ctx: RequestContext, path: str) -> Response:
        method = request.method
        allowed = []
        for route_method, pattern, template, handler in self.routes:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            set_route(request.scope, self.prefix + template)
            if route_method != method:
                allowed.append(route_method)
                continue
            body: Any = None
            if method in ("PUT", "POST"):
                raw = await request.body()
                if raw or method == "PUT":
                    body = jsonparse.loads(raw)
            if handler in _THREADED:
                return await run_in_threadpool(handler, self, ctx, found.groupdict(), body)
            return handler(self, ctx, found.groupdict(), body)
        if allowed:
            raise errors.MethodNotAllowed(
                "The method specified is not allowed for this resource.", sorted(allowed)
            )
        raise errors.NotFound("The resource could not be found.")
