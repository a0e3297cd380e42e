"""Policy: which roles may do what. Rule names and defaults follow upstream Placement's.

Writes and most reads: ``admin`` or ``service``. Project usages: also a ``reader`` (or
``member``) of that very project.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from allotment.context import RequestContext
from allotment.errors import Forbidden

Check = Callable[[RequestContext, Mapping[str, str]], bool]


def admin_or_service(ctx: RequestContext, _target: Mapping[str, str]) -> bool:
    return ctx.has_any_role("admin", "service")


def admin_or_project_reader_or_service(ctx: RequestContext, target: Mapping[str, str]) -> bool:
    if admin_or_service(ctx, target):
        return True
    project = target.get("project_id")
    return (
        project is not None and ctx.project_id == project and ctx.has_any_role("reader", "member")
    )


# Rules not listed here default to admin_or_service.
RULES: dict[str, Check] = {
    "placement:usages": admin_or_project_reader_or_service,
}


def authorize(ctx: RequestContext, rule: str, target: Mapping[str, str] | None = None) -> None:
    """Raise Forbidden unless ``ctx`` may perform ``rule``."""
    check = RULES.get(rule, admin_or_service)
    if not check(ctx, target or {}):
        raise Forbidden(f"Policy does not allow {rule} to be performed.")
