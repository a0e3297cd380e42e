"""The HTTP server's own bounds, below the application: uvicorn's httptools protocol with
a cap on the request line plus headers (431) and a deadline for them (408, slowloris).

uvicorn bounds neither with httptools: a 64 MB header is parsed in full, and a connection
that sends half a header is held forever. This subclass counts what the parser hands over
and closes a connection whose headers are too large or too slow, before any ASGI work.
It relies on uvicorn's protocol callbacks, hence the upper bound on uvicorn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from allotment.config import LimitsConfig


def _close_with(transport: asyncio.Transport, status: bytes, message: str) -> None:
    body = message.encode()
    transport.write(
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )
    transport.close()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with ``max_header_bytes`` and ``header_timeout`` (set by ``protocol``)."""

    max_header_bytes = 65536
    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_size = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self._refused = True
            _close_with(
                self.transport,
                b"408 Request Timeout",
                f"Headers not received within {self.header_timeout:g} s.",
            )

    def _count(self, size: int) -> None:
        self._header_size += size
        if self._header_size > self.max_header_bytes and not self._refused:
            self._refused = True
            self._disarm_header_timer()
            _close_with(
                self.transport,
                b"431 Request Header Fields Too Large",
                f"Request line and headers exceed {self.max_header_bytes} bytes.",
            )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        new_request = self.cycle is None or self.cycle.response_complete
        if new_request and self._header_timer is None:
            # Bytes of a new request (or its first ones): its headers are on the clock.
            self._arm_header_timer()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_size = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)


def configure(limits: LimitsConfig) -> type[BoundedHttpToolsProtocol]:
    """Set the bounds and return the class for uvicorn's ``http``. A class attribute, not a
    class built per call: worker processes import the class by name, then each worker's
    app factory configures it from the same settings."""
    BoundedHttpToolsProtocol.max_header_bytes = limits.max_header_bytes
    BoundedHttpToolsProtocol.header_timeout = limits.header_timeout
    return BoundedHttpToolsProtocol
