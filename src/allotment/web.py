"""HTTP helpers shared by both APIs: JSON encoding and upstream-Placement-shaped error bodies
(``{"errors": [{"status", "title", "detail", "code", "request_id"}]}``)."""

from __future__ import annotations

import email.utils
import functools
import html
import http
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import Response

from allotment import errors

JSON = "application/json"

STATUS_OF: list[tuple[type[errors.AllotmentError], int]] = [
    (errors.InvalidInput, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.MethodNotAllowed, 405),
    (errors.NotAcceptable, 406),
    (errors.Conflict, 409),
    (errors.UnsupportedMediaType, 415),
    (errors.ServiceUnavailable, 503),
]

# webob's explanations, which upstream puts in front of every detail.
EXPLANATION = {
    400: "The server could not comply with the request since it is either malformed "
    "or otherwise incorrect.",
    401: "This server could not verify that you are authorized to access the document you "
    "requested. Either you supplied the wrong credentials (e.g., bad password), or your "
    "browser does not understand how to supply the credentials required.",
    403: "Access was denied to this resource.",
    404: "The resource could not be found.",
    408: "The server timed out waiting for the request.",
    409: "There was a conflict when trying to complete your request.",
    413: "The request is larger than the server is willing or able to process.",
    431: "The request's header fields are too large.",
    500: "The server has either erred or is incapable of performing the requested operation.",
    503: "The server is currently unavailable. Please try again at a later time.",
}


def status_of(exc: errors.AllotmentError) -> int:
    if isinstance(exc, errors.RequestTooLarge | errors.RequestTimeout):
        return exc.status
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


def set_route(scope: Any, template: str) -> None:
    """Name the route template a request matched (what metrics and the access line show:
    ``/resource_providers/{uuid}``, never the raw path)."""
    state = scope.get("state")
    if isinstance(state, dict):
        state["route"] = template


def dumps(data: Any) -> bytes:
    return orjson.dumps(data)


def error_detail(status: int, message: str, *, method: str = "", content_type: str = "") -> str:
    """The ``detail`` text exactly as upstream (webob) shapes it."""
    message = message.replace("\n", " ")
    if status == 405:
        return f"The method {method} is not allowed for this resource. \n\n {message}"
    if status == 406:
        return (
            "The resource could not be generated that was acceptable to your browser "
            f"(content of type {JSON}. \n\n {message}"
        )
    if status == 415:
        return (
            f"The request media type {content_type} is not supported by this server. \n\n {message}"
        )
    return f"{EXPLANATION.get(status, '')}\n\n {message}  "


def accepts_json(accept: str) -> bool:
    """Whether an Accept header admits application/json (q > 0)."""
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and media.lower() in (JSON, "application/*", "*/*"):
            return True
    return False


def _html_error(status: int, title: str, detail: str) -> bytes:
    explanation, _, message = detail.partition("\n\n")
    return (
        f"<html>\n <head>\n  <title>{status} {title}</title>\n </head>\n <body>\n"
        f"  <h1>{status} {title}</h1>\n  {html.escape(explanation.strip())}<br /><br />\n"
        f"{html.escape(message.strip())}\n </body>\n</html>"
    ).encode()


def error_response(
    exc: errors.AllotmentError,
    *,
    request_id: str,
    with_code: bool,
    method: str = "",
    content_type: str = "",
    accept: str | None = None,
) -> Response:
    status = status_of(exc)
    error: dict[str, Any] = {
        "status": status,
        "title": http.HTTPStatus(status).phrase,
        "detail": error_detail(status, exc.message, method=method, content_type=content_type),
    }
    if with_code:
        error["code"] = exc.code
    error["request_id"] = request_id
    error.update(exc.extra)
    headers = {}
    if isinstance(exc, errors.MethodNotAllowed):
        headers["allow"] = ", ".join(exc.allowed)
    if accept and not accepts_json(accept) and "text/html" in accept:
        # A client that only takes HTML (a browser) gets webob's HTML error page, as upstream.
        body = _html_error(status, error["title"], error["detail"])
        return Response(body, status, headers, "text/html")
    return Response(dumps({"errors": [error]}), status, headers, JSON)


@functools.lru_cache(maxsize=256)
def http_date(when: datetime) -> str:
    """RFC 7231 date of a timestamp; cached, as responses mostly carry recent whole seconds."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return email.utils.format_datetime(when.astimezone(UTC), usegmt=True)
