"""Microversion negotiation for every Placement response, errors included."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allotment import errors
from allotment.placement.api import microversion
from allotment.web import error_response

_VARY = (b"vary", microversion.HEADER.encode("ascii"))


class MicroversionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = accept = None
        for name, value in scope["headers"]:
            if name == b"openstack-api-version":
                header = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
        state = scope.setdefault("state", {})
        try:
            version = microversion.parse(header)
        except errors.AllotmentError as exc:
            response = error_response(
                exc, request_id=state["context"].request_id, with_code=False, accept=accept
            )
            await response(scope, receive, send)
            return
        state["microversion"] = version
        version_header = (b"openstack-api-version", version.header_value.encode("ascii"))

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), version_header, _VARY]
            await send(message)

        await self.app(scope, receive, send_with_version)
