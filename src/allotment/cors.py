"""Cross-origin resource sharing, with oslo.middleware's semantics (what upstream Placement
runs): preflight requests are answered here, a disallowed origin simply gets no CORS
headers (never an error), and an allowed one gets its origin echoed back."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allotment.config import CorsConfig

METHODS = "GET, POST, PUT, DELETE, PATCH, OPTIONS"


class CorsMiddleware:
    def __init__(self, app: ASGIApp, config: CorsConfig) -> None:
        self.app = app
        self.origins = set(config.allowed_origin)
        self.any_origin = "*" in self.origins
        self.allow_headers = {h.lower() for h in config.allow_headers}
        self.expose_headers = ", ".join(config.expose_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self.any_origin or origin in self.origins
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(send, origin if allowed else None, headers)
            return
        if not allowed:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"access-control-allow-origin", origin.encode("latin-1"))]
                if self.expose_headers:
                    extra.append((b"access-control-expose-headers", self.expose_headers.encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, send: Send, origin: str | None, headers: dict[str, str]) -> None:
        out: list[tuple[bytes, bytes]] = [(b"content-length", b"0")]
        if origin is not None:
            requested = [
                h.strip()
                for h in headers.get("access-control-request-headers", "").split(",")
                if h.strip()
            ]
            granted = [h for h in requested if h.lower() in self.allow_headers]
            out += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", METHODS.encode()),
                (b"vary", b"Origin"),
            ]
            if granted:
                out.append((b"access-control-allow-headers", ", ".join(granted).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send({"type": "http.response.body", "body": b""})
