"""The scheduler HTTP API (``/scheduler/v1`` by default): the host-state routes that feed
the HostManager. Each handler validates the body, calls one HostManager method with the
request's context, and shapes the answer; the HostManager checks roles and logs.

Errors use the same body as Placement's (``{"errors": [{..., "code", "request_id"}]}``),
always with the error code.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from allotment import errors
from allotment.context import RequestContext
from allotment.scheduler.host_manager import HostManager
from allotment.scheduler.records import AggregateBody, HostRecord, HostReport, InstanceInfo, parse
from allotment.web import JSON, dumps, error_response, status_of

LOG = logging.getLogger(__name__)
Handler = Callable[[HostManager, RequestContext, dict[str, str], Any], Response]


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


def put_host(hm: HostManager, ctx: RequestContext, params: dict[str, str], body: Any) -> Response:
    report = parse(HostReport, body, "host report")
    return _json(_record(hm.report_host(ctx, params["host"], report)))


def list_hosts(hm: HostManager, ctx: RequestContext, params: dict[str, str], body: Any) -> Response:
    return _json({"hosts": [status.to_dict() for status in hm.list_hosts(ctx)]})


def put_aggregate(
    hm: HostManager, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    aggregate = hm.update_aggregate(ctx, params["uuid"], parse(AggregateBody, body, "aggregate"))
    return _json(
        {
            "uuid": aggregate.uuid,
            "name": aggregate.name,
            "hosts": sorted(aggregate.hosts),
            "metadata": aggregate.metadata,
        }
    )


def delete_aggregate(
    hm: HostManager, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    hm.delete_aggregate(ctx, params["uuid"])
    return Response(status_code=204)


def put_instances(
    hm: HostManager, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    items = _body_object(body, "instances").get("instances")
    if not isinstance(items, list):
        raise errors.InvalidInput('The body must be {"instances": [{"uuid": ...}, ...]}.')
    infos = [parse(InstanceInfo, item, f"instances[{i}]") for i, item in enumerate(items)]
    hm.update_instance_info(ctx, params["host"], infos)
    return Response(status_code=204)


def delete_instance(
    hm: HostManager, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    hm.delete_instance_info(ctx, params["host"], params["uuid"])
    return Response(status_code=204)


def sync_instances(
    hm: HostManager, ctx: RequestContext, params: dict[str, str], body: Any
) -> Response:
    uuids = _body_object(body, "sync").get("instance_uuids")
    if not isinstance(uuids, list) or not all(isinstance(u, str) for u in uuids):
        raise errors.InvalidInput('The body must be {"instance_uuids": ["<uuid>", ...]}.')
    try:
        result = hm.sync_instance_info(ctx, params["host"], uuids)
    except ValueError as exc:
        raise errors.InvalidInput(f"Invalid instance_uuids: {exc}") from None
    return _json({"in_sync": result.in_sync, "added": result.added, "removed": result.removed})


def reset(hm: HostManager, ctx: RequestContext, params: dict[str, str], body: Any) -> Response:
    if not ctx.is_admin:
        raise errors.Forbidden("Resetting the host cache needs the admin role.")
    snapshot = hm.reset(ctx)
    return _json({"generation": snapshot.generation, "hosts": len(snapshot)})


_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/hosts", list_hosts),
    ("PUT", "/hosts/{host}", put_host),
    ("PUT", "/hosts/{host}/instances", put_instances),
    ("DELETE", "/hosts/{host}/instances/{uuid}", delete_instance),
    ("POST", "/hosts/{host}/instances/sync", sync_instances),
    ("PUT", "/aggregates/{uuid}", put_aggregate),
    ("DELETE", "/aggregates/{uuid}", delete_aggregate),
    ("POST", "/reset", reset),
]


class SchedulerAPI:
    """ASGI app for the scheduler prefix; ``prefix`` is stripped before routing."""

    def __init__(self, host_manager: HostManager, prefix: str) -> None:
        self.host_manager = host_manager
        self.prefix = prefix.rstrip("/")
        self.routes = [
            (method, re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)), handler)
            for method, path, handler in _ROUTES
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
        for route_method, pattern, handler in self.routes:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            body: Any = None
            if method in ("PUT", "POST"):
                raw = await request.body()
                if raw or method == "PUT":
                    try:
                        body = orjson.loads(raw)
                    except orjson.JSONDecodeError as exc:
                        raise errors.InvalidInput(f"Malformed JSON: {exc}") from None
            return handler(self.host_manager, ctx, found.groupdict(), body)
        if allowed:
            raise errors.MethodNotAllowed(
                "The method specified is not allowed for this resource.", sorted(allowed)
            )
        raise errors.NotFound("The resource could not be found.")
