"""Bounded work per request (``[limits]``), enforced before the application sees a request.

The outermost ASGI layer: it refuses oversized headers (431), an over-long ``X-Auth-Token``
(401, before any token lookup), and a body larger than allowed (413, from Content-Length
alone or as soon as a chunked body passes the bound, without reading the rest); it reads
the whole body within ``request_timeout`` (408) and answers a read within it (503).
The HTTP server's own header-size and header-read bounds live in ``allotment.httpserver``.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allotment import errors
from allotment.config import LimitsConfig
from allotment.context import new_request_id
from allotment.web import error_response

LOG = logging.getLogger(__name__)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def header_bytes(scope: Scope) -> int:
    """The size of the request line and headers as sent (near enough: separators counted)."""
    size = len(scope.get("raw_path") or scope["path"].encode()) + len(scope["query_string"])
    return size + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, limits: LimitsConfig) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._check_headers(scope)
        if refusal is not None:
            await _refuse(refusal, scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                body = await self._read_body(receive)
        except TimeoutError:
            refusal = errors.RequestTimeout(
                f"The request body did not arrive within {self.limits.request_timeout:g} s "
                "([limits] request_timeout).",
                status=408,
            )
        except errors.RequestTooLarge as exc:
            refusal = exc
        if refusal is not None:
            await _refuse(refusal, scope, receive, send)
            return
        replay = _Replay(body, receive)
        if scope["method"] not in READ_METHODS:
            await self.app(scope, replay, send)
            return
        await self._answer_in_time(scope, replay, send)

    def _check_headers(self, scope: Scope) -> errors.AllotmentError | None:
        limits = self.limits
        if header_bytes(scope) > limits.max_header_bytes:
            return errors.RequestTooLarge(
                f"The request line and headers exceed {limits.max_header_bytes} bytes "
                "([limits] max_header_bytes).",
                status=431,
            )
        for name, value in scope["headers"]:
            if name == b"x-auth-token" and len(value) > limits.max_token_bytes:
                return errors.Unauthorized(
                    f"X-Auth-Token is longer than {limits.max_token_bytes} bytes; no token is."
                )
            if name == b"content-length":
                declared = value.strip()
                if not declared.isdigit():
                    return errors.InvalidInput("Content-Length must be a number of bytes.")
                if int(declared) > limits.max_body_bytes:
                    return self._too_large()
        return None

    def _too_large(self) -> errors.RequestTooLarge:
        return errors.RequestTooLarge(
            f"The request body exceeds {self.limits.max_body_bytes} bytes "
            "([limits] max_body_bytes).",
            status=413,
        )

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _answer_in_time(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with asyncio.timeout(self.limits.request_timeout):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if started:
                raise
            LOG.warning(
                "%s %s not answered within %g s; answering 503",
                scope["method"],
                scope["path"],
                self.limits.request_timeout,
            )
            refusal = errors.RequestTimeout(
                f"The request was not answered within {self.limits.request_timeout:g} s "
                "([limits] request_timeout); narrow it (a smaller limit, fewer groups).",
                status=503,
            )
            await _refuse(refusal, scope, receive, send, close=False)


class _Replay:
    """The body read ahead, handed to the application as one message; then the client's
    own messages (a disconnect)."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self._body: bytes | None = body
        self._receive = receive

    async def __call__(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return await self._receive()


async def _refuse(
    exc: errors.AllotmentError, scope: Scope, receive: Receive, send: Send, *, close: bool = True
) -> None:
    response = error_response(exc, request_id=new_request_id(), with_code=True)
    if close:
        # The rest of what the client sends is not read: it must not be taken for a request.
        response.headers["connection"] = "close"
    await response(scope, receive, send)
