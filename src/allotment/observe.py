"""The operator's endpoints and the per-request observer.

* ``ObserveMiddleware`` (outermost): counts and times every request by route template
  for ``/metrics`` and writes the access line (``[logging] access_log``).
* ``GET /healthz``: the process answers (liveness). No auth, no dependency checked.
* ``GET /readyz``: the database answers, its schema is current, the capacity index and
  host cache are caught up (readiness); 503 with the failing checks otherwise. No auth.
* ``GET /metrics``: the Prometheus exposition, behind ``[metrics] auth``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allotment import errors, health
from allotment.config import Settings
from allotment.context import RequestContext
from allotment.db.database import Database
from allotment.log import ACCESS
from allotment.metrics import CONTENT_TYPE, UNMATCHED, Metrics
from allotment.placement.index.sync import CapacityIndex
from allotment.scheduler.host_manager import HostManager
from allotment.web import JSON, dumps, error_response, set_route

HEALTHZ = "/healthz"
READYZ = "/readyz"
METRICS = "/metrics"
# Roles that may read /metrics under [metrics] auth = "token".
METRICS_ROLES = ("admin", "service", "reader")


class ObserveMiddleware:
    """Times and counts every HTTP request under its route template (never the raw path:
    ids in paths would make one series per provider), and logs one access line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            route = state.get("route", UNMATCHED) if isinstance(state, dict) else UNMATCHED
            method = scope["method"]
            self.metrics.request(method, route, status, seconds)
            if ACCESS.isEnabledFor(logging.INFO):
                self._access_line(scope, state, method, route, status, seconds)

    @staticmethod
    def _access_line(
        scope: Scope, state: Any, method: str, route: str, status: int, seconds: float
    ) -> None:
        ctx = state.get("context") if isinstance(state, dict) else None
        extra: dict[str, Any] = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        if isinstance(ctx, RequestContext):
            extra.update(
                request_id=ctx.request_id,
                global_request_id=ctx.global_request_id,
                user_id=ctx.user_id,
                project_id=ctx.project_id,
            )
        # Raw paths name consumers (instance ids): those appear only at debug level.
        shown = route
        if ACCESS.isEnabledFor(logging.DEBUG):
            shown = extra["path"] = scope["path"]
        ACCESS.info("%s %s %d %.1f ms", method, shown, status, seconds * 1000, extra=extra)


class Endpoints:
    """``/healthz``, ``/readyz`` and ``/metrics`` of one process."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        metrics: Metrics,
        index: CapacityIndex | None,
        hosts: HostManager | None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.metrics = metrics
        self.index = index
        self.hosts = hosts

    def paths(self) -> frozenset[str]:
        return frozenset({HEALTHZ, READYZ, METRICS})

    def public(self) -> frozenset[str]:
        """Paths served without credentials."""
        found = {HEALTHZ, READYZ}
        if self.settings.metrics.auth == "none":
            found.add(METRICS)
        return frozenset(found)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        set_route(scope, path)
        ctx: RequestContext = scope["state"]["context"]
        if scope["method"] not in ("GET", "HEAD"):
            exc: errors.AllotmentError = errors.MethodNotAllowed(
                "The method specified is not allowed for this resource.", ["GET", "HEAD"]
            )
            await error_response(exc, request_id=ctx.request_id, with_code=True)(
                scope, receive, send
            )
            return
        if path == HEALTHZ:
            response = Response(dumps({"status": "alive"}), media_type=JSON)
        elif path == READYZ:
            response = await run_in_threadpool(self._ready)
        else:
            if self.settings.metrics.auth == "token" and not ctx.has_any_role(*METRICS_ROLES):
                exc = errors.Forbidden(
                    "Reading /metrics needs the admin, service or reader role "
                    "([metrics] auth = token)."
                )
                await error_response(exc, request_id=ctx.request_id, with_code=True)(
                    scope, receive, send
                )
                return
            response = await run_in_threadpool(self._metrics)
        await response(scope, receive, send)

    def _ready(self) -> Response:
        checks = health.readiness(self.db, self.settings, self.index, self.hosts)
        ready = all(c.ok for c in checks)
        body = {
            "status": "ready" if ready else "not ready",
            "checks": {c.name: c.to_dict() for c in checks},
        }
        return Response(dumps(body), status_code=200 if ready else 503, media_type=JSON)

    def _metrics(self) -> Response:
        self.metrics.record_state(self.index, self.hosts)
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)
