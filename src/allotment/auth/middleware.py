"""ASGI middleware that gives every request its id and its authenticated context.

An inbound ``X-OpenStack-Request-ID`` of the form ``req-<uuid>`` is the caller's id of the
whole operation: it becomes the context's ``global_request_id`` (logged, and passed on to
placement), as oslo.middleware's request_id does; anything else in it is ignored. The
request always gets its own new id, returned in the response headers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allotment import errors
from allotment.auth.base import Authenticator
from allotment.context import RequestContext, new_request_id
from allotment.log import CALLER, REQUEST_ID
from allotment.web import error_response

REQUEST_ID_HEADERS = (b"x-openstack-request-id", b"openstack-request-id")


PUBLIC_PATHS = frozenset({"/", "", "/openapi.json"})
# oslo.middleware's format for a global request id.
GLOBAL_REQUEST_ID = re.compile(r"req-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}")


def inbound_global_id(headers: dict[str, str]) -> str | None:
    """The caller's global request id, when it sent a well-formed one."""
    value = headers.get("x-openstack-request-id", "").strip()
    return value if GLOBAL_REQUEST_ID.fullmatch(value) else None


def public_root(scope: Scope) -> bool:
    """``GET /`` (the version document, as upstream) and the OpenAPI document need no
    credentials."""
    return scope["path"] in PUBLIC_PATHS


class ContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        is_public: Callable[[Scope], bool] = public_root,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.is_public = is_public
        # Keystone validation may wait on Keystone: keep the event loop free meanwhile.
        self.blocking = bool(getattr(authenticator, "blocking", False))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        rid = request_id.encode("ascii")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.blocking:
            ctx = await run_in_threadpool(self.authenticator.authenticate, headers, request_id)
        else:
            ctx = self.authenticator.authenticate(headers, request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((name, rid) for name in REQUEST_ID_HEADERS),
                ]
            await send(message)

        global_id = inbound_global_id(headers)
        token = REQUEST_ID.set(request_id)
        caller = CALLER.set((global_id, None, None))
        try:
            if ctx is None:
                if not self.is_public(scope):
                    scope.setdefault("state", {})["context"] = RequestContext(
                        request_id=request_id, global_request_id=global_id
                    )
                    response = error_response(
                        errors.Unauthorized("Authentication required: send a valid X-Auth-Token."),
                        request_id=request_id,
                        with_code=True,
                    )
                    await response(scope, receive, send_with_id)
                    return
                ctx = RequestContext(request_id=request_id)
            if global_id is not None:
                ctx = dataclasses.replace(ctx, global_request_id=global_id)
            CALLER.set((global_id, ctx.user_id, ctx.project_id))
            scope.setdefault("state", {})["context"] = ctx
            await self.app(scope, receive, send_with_id)
        finally:
            CALLER.reset(caller)
            REQUEST_ID.reset(token)
