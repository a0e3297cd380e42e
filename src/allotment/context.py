"""The request context: who is calling and which request this is; passed, never dropped."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The caller as Keystone describes one: user, project or system scope, domains, roles."""

    user_id: str | None = None
    project_id: str | None = None
    roles: frozenset[str] = frozenset()
    request_id: str = field(default_factory=new_request_id)
    # The id of the whole operation across services (OpenStack's global_request_id), when
    # the caller sent one.
    global_request_id: str | None = None
    # "all" for a keystone system-scoped token, else None (project or domain scope).
    system_scope: str | None = None
    # Set for a domain-scoped token (the domain the token is scoped to).
    domain_id: str | None = None
    user_domain_id: str | None = None
    project_domain_id: str | None = None
    # Set by noauth mode; shown in logs so nobody mistakes a dev server for a secured one.
    noauth: bool = False

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def has_any_role(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)

    def policy_values(self) -> dict[str, Any]:
        """The credentials oslo.policy checks (the keys oslo.context's ``to_policy_values``
        gives, so upstream policy files read the same attributes)."""
        return {
            "user_id": self.user_id,
            "project_id": self.project_id,
            "domain_id": self.domain_id,
            "user_domain_id": self.user_domain_id,
            "project_domain_id": self.project_domain_id,
            "system_scope": self.system_scope,
            "roles": sorted(self.roles),
        }

    def policy_key(self) -> tuple[tuple[str, Any], ...]:
        """``policy_values`` in a hashable form, for caching decisions."""
        values = self.policy_values()
        values["roles"] = tuple(values["roles"])
        return tuple(values.items())

    @classmethod
    def internal(cls, request_id: str | None = None) -> RequestContext:
        """Context for work the service does on its own behalf (periodic tasks, start-up)."""
        return cls(
            user_id="allotment",
            project_id=None,
            roles=frozenset({"admin", "service"}),
            request_id=request_id or new_request_id(),
        )
