"""HTTP plumbing shared by every Placement handler: the request wrapper, the handler
decorator, JSON responses, upstream-compatible error bodies and Last-Modified handling.

Handlers are plain synchronous functions ``(PlacementRequest) -> Response``: the SQL and
index work they do is short and CPU-bound, so running them inline on the event loop is
cheaper than a thread hop; parallelism comes from more worker processes. A handler whose
work grows with the request (allocation candidates) is marked ``in_thread``: it runs in a
worker thread so the event loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from allotment import errors, jsonparse
from allotment.auth import authorize
from allotment.context import RequestContext
from allotment.placement import microversions
from allotment.placement.api import microversion
from allotment.placement.api.microversion import Microversion
from allotment.placement.schemas import Schema
from allotment.placement.service import PlacementService
from allotment.web import JSON, accepts_json, dumps, error_response, http_date, status_of

LOG = logging.getLogger(__name__)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def newest(times: Iterable[datetime | None]) -> datetime:
    """The latest of some timestamps, or now when there are none (upstream's rule)."""
    known = [t for t in times if t is not None]
    return max(known) if known else datetime.now(UTC).replace(tzinfo=None, microsecond=0)


class PlacementRequest:
    """What a handler sees: context, microversion, path and query parameters, body."""

    __slots__ = ("_query", "body", "context", "method", "mv", "path_params", "raw", "service")

    def __init__(self, raw: Request, body: bytes) -> None:
        self.raw = raw
        self.body = body
        self.method: str = raw.scope["method"]
        state = raw.scope["state"]
        self.context: RequestContext = state["context"]
        self.mv: Microversion = state["microversion"]
        self.path_params: dict[str, str] = raw.scope.get("path_params", {})
        self.service: PlacementService = raw.app.state.placement
        self._query: list[tuple[str, str]] | None = None

    @property
    def query(self) -> list[tuple[str, str]]:
        """Query parameters in order, repeated keys kept."""
        if self._query is None:
            self._query = parse_qsl(
                self.raw.scope["query_string"].decode("latin-1"), keep_blank_values=True
            )
        return self._query

    def query_dict(self) -> dict[str, str]:
        """Last value wins, as upstream's schema checks see the query."""
        return dict(self.query)

    def require_version(self, minor: int) -> None:
        """Hide an endpoint before microversion 1.``minor`` with a bare 404, ahead of every
        other check, as upstream masks versioned handlers."""
        if not self.mv.at_least(minor):
            raise errors.NotFound("")

    def authorize(self, rule: str, target: dict[str, str] | None = None) -> None:
        authorize(self.context, rule, target)

    @contextmanager
    def provider_checked_first(self, uuid: str) -> Iterator[None]:
        """Report a missing provider ahead of any other error of the block, as upstream (which
        looks the provider up before it reads the body). Looked up only when the block
        fails: a write finds the provider in its own transaction anyway."""
        try:
            yield
        except errors.AllotmentError as exc:
            if not isinstance(exc, errors.NotFound):
                self.service.get_provider(uuid)
            raise

    def check_content_type(self) -> None:
        content_type = self.raw.headers.get("content-type", "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != JSON:
            shown = media_type or "None"
            raise errors.UnsupportedMediaType(
                f"The media type {shown} is not supported, use {JSON}", shown
            )

    def url(self, path: str) -> str:
        """An absolute URL for ``path`` on this server (for Location headers)."""
        scope = self.raw.scope
        host = self.raw.headers.get("host")
        if not host:
            server = scope.get("server") or ("localhost", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}{path}"

    def json(self, schema: Schema | None = None) -> Any:
        """The JSON body, checked for content type, syntax and ``schema``."""
        self.check_content_type()
        data = jsonparse.loads(self.body)
        if schema is not None:
            schema.validate(data)
        return data

    @property
    def wants_last_modified(self) -> bool:
        return self.mv.at_least(microversions.LAST_MODIFIED)

    def respond(
        self,
        data: Any = None,
        status: int = 200,
        *,
        last_modified: datetime | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A JSON response (or an empty one for ``data=None``) with upstream's cache headers."""
        out = dict(headers or {})
        if last_modified is not None and self.wants_last_modified:
            out["last-modified"] = http_date(last_modified)
            out["cache-control"] = "no-cache"
        if data is None:
            return Response(None, status, out)
        return Response(dumps(data), status, out, JSON)


Handler = Callable[[PlacementRequest], Response]
Endpoint = Callable[[Request], Awaitable[Response]]


def takes_json(handler: Handler) -> Handler:
    """Mark a handler whose body must be JSON: the content type is checked before anything
    else (so a wrong type is a 415 even for a provider that does not exist), as upstream."""
    handler.takes_json = True  # type: ignore[attr-defined]
    return handler


def in_thread(handler: Handler) -> Handler:
    """Mark a handler to run in a worker thread (its work is bounded but can be long)."""
    handler.in_thread = True  # type: ignore[attr-defined]
    return handler


def index_free(handler: Handler) -> Handler:
    """Mark a handler that never reads the capacity index: it always runs inline."""
    handler.index_free = True  # type: ignore[attr-defined]
    return handler


def _precheck(req: PlacementRequest, handler: Handler) -> None:
    headers = req.raw.headers
    if req.method == "GET":
        accept = headers.get("accept")
        if accept and not accepts_json(accept):
            raise errors.NotAcceptable(f"Only {JSON} is provided")
        return
    if req.method in BODY_METHODS:
        content_type = headers.get("content-type")
        if req.body and not content_type:
            raise errors.InvalidInput("content-type header required when content-length > 0")
        if getattr(handler, "takes_json", False):
            req.check_content_type()


# Threads that may wait for the index at once: each holds a database connection meanwhile,
# so more would drain the pool (default 10 + 10) and time out other requests.
MAX_INDEX_WAITERS = 8
_WAITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _waiters() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    found = _WAITERS.get(loop)
    if found is None:
        found = _WAITERS[loop] = asyncio.Semaphore(MAX_INDEX_WAITERS)
    return found


async def _run_beside_searches(handler: Handler, req: PlacementRequest) -> Response:
    """Run a handler inline unless a worker thread holds the capacity index (a long
    candidates search): then in a thread too, so the event loop never waits for the lock.

    A read keeps the lock it probed with, so no search can take it in between; a write
    only probes, because writes take the database's lock before the index's and holding
    the index first could deadlock with a claim in a thread."""
    lock = req.service.index.lock
    if not lock.acquire(blocking=False):
        async with _waiters():
            return await run_in_threadpool(handler, req)
    if req.method != "GET":
        lock.release()
        return handler(req)
    try:
        return handler(req)
    finally:
        lock.release()


def endpoint(handler: Handler) -> Endpoint:
    """Adapt a synchronous handler to Starlette and map domain errors to HTTP once."""

    threaded = getattr(handler, "in_thread", False)
    inline = getattr(handler, "index_free", False)

    async def run(request: Request) -> Response:
        body = await request.body() if request.scope["method"] in BODY_METHODS else b""
        req = PlacementRequest(request, body)
        try:
            _precheck(req, handler)
            if threaded:
                return await run_in_threadpool(handler, req)
            if inline:
                return handler(req)
            return await _run_beside_searches(handler, req)
        except errors.AllotmentError as exc:
            if status_of(exc) >= 500:
                LOG.error("%s %s failed: %s", req.method, request.url.path, exc.message)
            return error_response(
                exc,
                request_id=req.context.request_id,
                with_code=req.mv.at_least(microversions.ERROR_CODES),
                method=req.method,
                content_type=getattr(exc, "media_type", ""),
                accept=request.headers.get("accept"),
            )

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def mv_or_min(scope: MutableMapping[str, Any]) -> Microversion:
    version = scope.get("state", {}).get("microversion")
    return version if isinstance(version, Microversion) else microversion.MIN
