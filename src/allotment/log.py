"""Logging set-up: every line carries the request id; tokens and credentials never appear.

The request's ids and caller live in context variables set by the request middleware (and
by ``request_context`` for the RPC door and in-process calls), so code deep in the service
layers logs them without passing them around. ``[logging] format = json`` writes one JSON
object per line with those fields, for log pipelines that index them.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import orjson

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# The caller's other ids: (global request id, user id, project id), any of them None.
CALLER: contextvars.ContextVar[tuple[str | None, str | None, str | None]] = contextvars.ContextVar(
    "caller", default=(None, None, None)
)
# Credentials in URLs ("postgresql://user:secret@host", also with a raw "@" in the
# password: everything up to the last "@" of the authority), token-looking header values
# and query parameters.
_SECRET_PATTERNS = [
    (re.compile(r"(://[^:/@\s'\"]*:)[^/\s'\"]*(@)"), r"\1***\2"),
    (re.compile(r"(?i)([?&](?:token|password|auth_token)=)[^&\s'\"]+"), r"\1***"),
    (re.compile(r"(?i)(x-auth-token['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"), r"\1***"),
    (re.compile(r"(?i)(password['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"), r"\1***"),
]


class _HasRequestId(Protocol):
    @property
    def request_id(self) -> str: ...


@contextlib.contextmanager
def request_context(ctx: _HasRequestId) -> Iterator[None]:
    """Log lines inside carry ``ctx``'s request id (and its global request id, user and
    project, when it has them), also for in-process calls that never passed the request
    middleware."""
    token = REQUEST_ID.set(ctx.request_id)
    caller = CALLER.set(
        (
            getattr(ctx, "global_request_id", None),
            getattr(ctx, "user_id", None),
            getattr(ctx, "project_id", None),
        )
    )
    try:
        yield
    finally:
        CALLER.reset(caller)
        REQUEST_ID.reset(token)


def global_request_id() -> str:
    """The id to pass on to the services this request calls (OpenStack's ``global_id``):
    the caller's global request id, else this request's own id ("-" outside a request)."""
    return CALLER.get()[0] or REQUEST_ID.get()


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    """Puts the request's ids on every record (an explicit ``extra`` wins: the access
    line is written after the request's context variables are gone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        if not hasattr(record, "global_request_id"):
            record.global_request_id, record.user_id, record.project_id = CALLER.get()
        return True


class RedactingFormatter(logging.Formatter):
    """The text format; a record's structured ``explanation`` (a NoValidHost's, given as
    ``extra``) follows its message on the same line, so one line says it all."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        explanation = getattr(record, "explanation", None)
        if explanation is not None:
            text = f"{text} explanation: {orjson.dumps(explanation, default=str).decode()}"
        return redact(text)


# What a LogRecord has whatever was logged; anything else on it came from ``extra``.
# (uvicorn's color_message is its message again, with terminal colours.)
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",
}
_ID_FIELDS = ("request_id", "global_request_id", "user_id", "project_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    request's ids and caller, any ``extra`` fields (the access line's route, status and
    duration), and the traceback when there is one. Redacted like the text format."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in _ID_FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "-":
                out[name] = value
        for name, value in record.__dict__.items():
            if name not in _RECORD_FIELDS and name not in out and name not in _ID_FIELDS:
                out[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode()


# The process id as oslo.log has it: with --workers the lines of several processes interleave.
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s [%(request_id)s] %(message)s"
# The one line per request (see ``access_line``).
ACCESS = logging.getLogger("allotment.access")


def setup(
    level: str = "INFO",
    *,
    access_log: bool = False,
    fmt: Literal["text", "json"] = "text",
) -> None:
    """Log to stderr, as text lines or JSON objects, redacted; ``access_log`` adds one line
    per request (method, path, route, status, duration and ids: never a header or the
    query string, so never a token)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    # Our own access line replaces uvicorn's, which knows neither ids nor routes.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    ACCESS.setLevel(logging.INFO if access_log else logging.WARNING)
