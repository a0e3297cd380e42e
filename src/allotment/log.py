"""Logging set-up: every line carries the request id; tokens and credentials never appear.

The request id lives in a context variable set by the request middleware, so code deep in
the service layers logs it without passing it around.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Iterator
from typing import Protocol

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
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
    """Log lines inside carry ``ctx``'s request id, also for in-process calls that never
    passed the request middleware."""
    token = REQUEST_ID.set(ctx.request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


# The process id as oslo.log has it: with --workers the lines of several processes interleave.
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s [%(request_id)s] %(message)s"


def setup(level: str = "INFO", *, access_log: bool = False) -> None:
    """Log to stderr through the redacting formatter; ``access_log`` adds uvicorn's one line
    per request (client, method, path and query, status: never a header, so never a token)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(RedactingFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.INFO if access_log else logging.WARNING)
