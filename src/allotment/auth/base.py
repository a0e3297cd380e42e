"""The authenticator interface shared by the back-ends, and the identity headers they share."""

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


def context_from_identity_headers(
    headers: Mapping[str, str], request_id: str, *, noauth: bool = False
) -> RequestContext:
    """The caller that keystonemiddleware's headers describe (``x-user-id``, ``x-project-id``,
    ``x-roles``, ``openstack-system-scope``, the domain ids), read as oslo.context reads them."""

    def get(*names: str) -> str | None:
        for name in names:
            value = headers.get(name)
            if value:
                return value
        return None

    roles = frozenset(r.strip() for r in headers.get("x-roles", "").split(",") if r.strip())
    return RequestContext(
        user_id=get("x-user-id", "x-user"),
        project_id=get("x-project-id", "x-tenant-id", "x-tenant"),
        roles=roles,
        request_id=request_id,
        system_scope=get("openstack-system-scope"),
        domain_id=get("x-domain-id"),
        user_domain_id=get("x-user-domain-id"),
        project_domain_id=get("x-project-domain-id"),
        noauth=noauth,
    )
