"""Upstream Placement's ``noauth2``: any token is accepted and names the caller.

``x-auth-token: user[:project]``; the token ``admin`` gets the admin role; ``x-roles``
(comma separated) overrides the roles; ``openstack-system-scope`` makes the context
system-scoped. For local development and conformance runs only: never expose it.
"""

from __future__ import annotations

from collections.abc import Mapping

from allotment.auth.base import TOKEN_HEADER
from allotment.context import RequestContext


class NoAuth:
    name = "noauth"

    def authenticate(self, headers: Mapping[str, str], request_id: str) -> RequestContext | None:
        token = headers.get(TOKEN_HEADER)
        if token is None:
            return None
        user_id, _, project_id = token.partition(":")
        project_id = project_id or user_id
        if "x-roles" in headers:
            roles = frozenset(r.strip() for r in headers["x-roles"].split(",") if r.strip())
        elif user_id == "admin":
            roles = frozenset({"admin"})
        else:
            roles = frozenset()
        system_scope = headers.get("openstack-system-scope") or None
        return RequestContext(
            user_id=user_id,
            project_id=None if system_scope else project_id,
            roles=roles,
            request_id=request_id,
            system_scope=system_scope,
            noauth=True,
        )
