"""The request context: who is calling and which request this is; passed, never dropped."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


@dataclass(frozen=True, slots=True)
class RequestContext:
    user_id: str | None = None
    project_id: str | None = None
    roles: frozenset[str] = frozenset()
    request_id: str = field(default_factory=new_request_id)
    # The id of the whole operation across services (OpenStack's global_request_id), when
    # the caller sent one.
    global_request_id: str | None = None
    # "system" scope for keystone-style system-scoped tokens, else None (project scope).
    system_scope: str | None = None
    # Set by noauth mode; shown in logs so nobody mistakes a dev server for a secured one.
    noauth: bool = False

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def has_any_role(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)

    @classmethod
    def internal(cls, request_id: str | None = None) -> RequestContext:
        """Context for work the service does on its own behalf (periodic tasks, start-up)."""
        return cls(
            user_id="allotment",
            project_id=None,
            roles=frozenset({"admin", "service"}),
            request_id=request_id or new_request_id(),
        )
