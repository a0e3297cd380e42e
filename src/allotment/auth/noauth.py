"""Upstream Placement's ``noauth2``: any token is accepted and names the caller.

``x-auth-token: user[:project]``; the token ``admin`` gets the admin role; ``x-roles``
(comma separated) overrides the roles. The other headers keystonemiddleware would set are
then read as a validated token's, as upstream: ``x-project-id`` and the domain ids win over
the token's project (the user is always the token's), and ``openstack-system-scope`` makes
the context system-scoped (no project unless ``x-project-id`` names one).
For local development and conformance runs only: never expose it.
"""

from __future__ import annotations

from collections.abc import Mapping

from allotment.auth.base import TOKEN_HEADER, context_from_identity_headers
from allotment.context import RequestContext


class NoAuth:
    name = "noauth"

    def authenticate(self, headers: Mapping[str, str], request_id: str) -> RequestContext | None:
        token = headers.get(TOKEN_HEADER)
        if token is None:
            return None
        user_id, _, project_id = token.partition(":")
        if "x-roles" in headers:
            roles = headers["x-roles"]
        elif user_id == "admin":
            roles = "admin"
        else:
            roles = ""
        implied = {}
        if not headers.get("openstack-system-scope"):
            implied["x-project-id"] = project_id or user_id
        given = {**implied, **headers, "x-user-id": user_id, "x-roles": roles}
        return context_from_identity_headers(given, request_id, noauth=True)
