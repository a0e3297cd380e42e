"""The authenticator interface shared by the back-ends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from allotment.context import RequestContext

TOKEN_HEADER = "x-auth-token"


class Authenticator(Protocol):
    """Turns request headers into a context, or None when the caller is not authenticated."""

    name: str

    def authenticate(self, headers: Mapping[str, str], request_id: str) -> RequestContext | None:
        """``headers`` has lower-case names."""
        ...


def credentials_from_headers(headers: Mapping[str, str]) -> str | None:
    return headers.get(TOKEN_HEADER) or None
