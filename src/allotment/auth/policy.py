"""Policy: which roles may do what. Rule names and defaults follow upstream Placement's.

Writes and most reads: ``admin`` or ``service``. Project usages: also a ``reader`` (or
``member``) of that very project. The scheduler's rules (``scheduler:...``) are ours, each
``admin`` or ``service`` by default.
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
    "scheduler:select_destinations": admin_or_service,
    "scheduler:explain": admin_or_service,
    "scheduler:hosts:list": admin_or_service,
    "scheduler:hosts:update": admin_or_service,
    "scheduler:hosts:delete": admin_or_service,
    "scheduler:aggregates:update": admin_or_service,
    "scheduler:aggregates:delete": admin_or_service,
    "scheduler:instances:update": admin_or_service,
    "scheduler:instances:delete": admin_or_service,
    "scheduler:instances:sync": admin_or_service,
    "scheduler:reset": admin_or_service,
}


# What a refused caller lacks, said in the message of our own rules (upstream's placement
# rules keep upstream's exact message).
NEEDS = {rule: "the admin or service role" for rule in RULES if rule.startswith("scheduler:")}


def authorize(ctx: RequestContext, rule: str, target: Mapping[str, str] | None = None) -> None:
    """Raise Forbidden unless ``ctx`` may perform ``rule`` (a missing or foreign context is
    refused like one without the roles)."""
    check = RULES.get(rule, admin_or_service)
    if not (isinstance(ctx, RequestContext) and check(ctx, target or {})):
        needs = f": needs {NEEDS[rule]}" if rule in NEEDS else ""
        raise Forbidden(f"Policy does not allow {rule} to be performed{needs}.")
