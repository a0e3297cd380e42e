"""Policy: which callers may do what, enforced by oslo.policy as upstream Placement does.

Placement's rules keep upstream's names and check strings (``placement:resource_providers:list``
is ``rule:admin_or_service_api``, ...), scoped to projects as in Placement 16; the scheduler's
routes have rules of their own (admin or service, any scope). ``[oslo_policy]``
``enforce_scope`` / ``enforce_new_defaults`` mean what they mean upstream, and a policy file
(YAML or JSON, upstream's rule syntax) overrides any rule by name. A policy file naming an
unknown rule, or holding a rule that does not parse, stops start-up.

One engine per process (``configure``), as upstream keeps one enforcer: every request of the
process is checked against the same rules. ``authorize`` is the call sites' entry point.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oslo_config import cfg
from oslo_policy import opts as policy_opts
from oslo_policy import policy

from allotment.context import RequestContext
from allotment.errors import ConfigError, Forbidden

LOG = logging.getLogger(__name__)

ADMIN_OR_SERVICE = "rule:admin_or_service_api"
SERVICE = "rule:service_api"
ADMIN_OR_PROJECT_READER_OR_SERVICE = "rule:admin_or_project_reader_or_service_api"
# What every scheduler rule allows by default: any admin or service token, in any scope.
SCHEDULER_DEFAULT = "role:admin or role:service"

_DEPRECATED_REASON = (
    "Placement's policies gained scope types and new default roles; the old role:admin "
    "default is honoured only with [oslo_policy] enforce_new_defaults = false."
)
_DEPRECATED_ADMIN = policy.DeprecatedRule(
    name="rule:admin_api",
    check_str="role:admin",
    deprecated_reason=_DEPRECATED_REASON,
    deprecated_since="Wallaby",
)

# (name, check string, scope types, deprecated default, description)
_BASE_RULES: list[tuple[str, str, list[str] | None, bool, str]] = [
    ("admin_api", "role:admin", ["project"], False, "Default rule for most placement APIs."),
    ("service_api", "role:service", ["project"], True, "Service-to-service placement APIs."),
    ("admin_or_service_api", "role:admin or role:service", ["project"], True, "Most APIs."),
    (
        "project_reader_api",
        "role:reader and project_id:%(project_id)s",
        None,
        True,
        "Project level reader APIs.",
    ),
    (
        "admin_or_project_reader_or_service_api",
        "role:admin or rule:project_reader_api or role:service",
        ["project"],
        True,
        "Project level reader APIs (usages of one's own project).",
    ),
]

# (name, check string, method, path) for every Placement route, as upstream names them.
_PLACEMENT_RULES: list[tuple[str, str, str, str]] = [
    ("placement:resource_providers:list", ADMIN_OR_SERVICE, "GET", "/resource_providers"),
    ("placement:resource_providers:create", ADMIN_OR_SERVICE, "POST", "/resource_providers"),
    ("placement:resource_providers:show", ADMIN_OR_SERVICE, "GET", "/resource_providers/{uuid}"),
    ("placement:resource_providers:update", ADMIN_OR_SERVICE, "PUT", "/resource_providers/{uuid}"),
    (
        "placement:resource_providers:delete",
        ADMIN_OR_SERVICE,
        "DELETE",
        "/resource_providers/{uuid}",
    ),
    ("placement:resource_classes:list", ADMIN_OR_SERVICE, "GET", "/resource_classes"),
    ("placement:resource_classes:create", ADMIN_OR_SERVICE, "POST", "/resource_classes"),
    ("placement:resource_classes:show", ADMIN_OR_SERVICE, "GET", "/resource_classes/{name}"),
    ("placement:resource_classes:update", ADMIN_OR_SERVICE, "PUT", "/resource_classes/{name}"),
    ("placement:resource_classes:delete", ADMIN_OR_SERVICE, "DELETE", "/resource_classes/{name}"),
    (
        "placement:resource_providers:inventories:list",
        ADMIN_OR_SERVICE,
        "GET",
        "/resource_providers/{uuid}/inventories",
    ),
    (
        "placement:resource_providers:inventories:create",
        ADMIN_OR_SERVICE,
        "POST",
        "/resource_providers/{uuid}/inventories",
    ),
    (
        "placement:resource_providers:inventories:show",
        ADMIN_OR_SERVICE,
        "GET",
        "/resource_providers/{uuid}/inventories/{resource_class}",
    ),
    (
        "placement:resource_providers:inventories:update",
        ADMIN_OR_SERVICE,
        "PUT",
        "/resource_providers/{uuid}/inventories[/{resource_class}]",
    ),
    (
        "placement:resource_providers:inventories:delete",
        ADMIN_OR_SERVICE,
        "DELETE",
        "/resource_providers/{uuid}/inventories[/{resource_class}]",
    ),
    (
        "placement:resource_providers:aggregates:list",
        ADMIN_OR_SERVICE,
        "GET",
        "/resource_providers/{uuid}/aggregates",
    ),
    (
        "placement:resource_providers:aggregates:update",
        ADMIN_OR_SERVICE,
        "PUT",
        "/resource_providers/{uuid}/aggregates",
    ),
    (
        "placement:resource_providers:usages",
        ADMIN_OR_SERVICE,
        "GET",
        "/resource_providers/{uuid}/usages",
    ),
    ("placement:usages", ADMIN_OR_PROJECT_READER_OR_SERVICE, "GET", "/usages"),
    ("placement:traits:list", ADMIN_OR_SERVICE, "GET", "/traits"),
    ("placement:traits:show", ADMIN_OR_SERVICE, "GET", "/traits/{name}"),
    ("placement:traits:update", ADMIN_OR_SERVICE, "PUT", "/traits/{name}"),
    ("placement:traits:delete", ADMIN_OR_SERVICE, "DELETE", "/traits/{name}"),
    (
        "placement:resource_providers:traits:list",
        ADMIN_OR_SERVICE,
        "GET",
        "/resource_providers/{uuid}/traits",
    ),
    (
        "placement:resource_providers:traits:update",
        ADMIN_OR_SERVICE,
        "PUT",
        "/resource_providers/{uuid}/traits",
    ),
    (
        "placement:resource_providers:traits:delete",
        ADMIN_OR_SERVICE,
        "DELETE",
        "/resource_providers/{uuid}/traits",
    ),
    ("placement:allocations:manage", ADMIN_OR_SERVICE, "POST", "/allocations"),
    ("placement:allocations:list", ADMIN_OR_SERVICE, "GET", "/allocations/{consumer_uuid}"),
    ("placement:allocations:update", ADMIN_OR_SERVICE, "PUT", "/allocations/{consumer_uuid}"),
    ("placement:allocations:delete", ADMIN_OR_SERVICE, "DELETE", "/allocations/{consumer_uuid}"),
    (
        "placement:resource_providers:allocations:list",
        ADMIN_OR_SERVICE,
        "GET",
        "/resource_providers/{uuid}/allocations",
    ),
    ("placement:allocation_candidates:list", ADMIN_OR_SERVICE, "GET", "/allocation_candidates"),
    ("placement:reshaper:reshape", SERVICE, "POST", "/reshaper"),
]

# The scheduler API's rules (paths relative to [server] scheduler_prefix).
_SCHEDULER_RULES: list[tuple[str, str, str]] = [
    ("scheduler:select_destinations", "POST", "/select_destinations"),
    ("scheduler:explain", "POST", "/explain"),
    ("scheduler:capacity", "POST", "/capacity"),
    ("scheduler:hosts:list", "GET", "/hosts[/{host}]"),
    ("scheduler:hosts:update", "PUT", "/hosts/{host}"),
    ("scheduler:hosts:delete", "DELETE", "/hosts/{host}"),
    ("scheduler:aggregates:update", "PUT", "/aggregates/{uuid}"),
    ("scheduler:aggregates:delete", "DELETE", "/aggregates/{uuid}"),
    ("scheduler:instances:update", "PUT", "/hosts/{host}/instances"),
    ("scheduler:instances:delete", "DELETE", "/hosts/{host}/instances/{uuid}"),
    ("scheduler:instances:sync", "POST", "/hosts/{host}/instances/sync"),
    ("scheduler:reset", "POST", "/reset"),
]


def _needs(rule: str) -> str:
    """What a refused caller lacks, said for our own rules (upstream's placement rules keep
    upstream's exact message)."""
    return ": needs the admin or service role" if rule.startswith("scheduler:") else ""


def default_rules(enforce_scope: bool = True) -> list[policy.RuleDefault]:
    """Every rule allotment enforces, with its default; without scope types when
    ``enforce_scope`` is off (so a token of any scope passes the scope check)."""

    def scope(types: list[str] | None) -> list[str] | None:
        return types if enforce_scope else None

    rules: list[policy.RuleDefault] = [
        policy.RuleDefault(
            name,
            check,
            description=text,
            scope_types=scope(types),
            deprecated_rule=_DEPRECATED_ADMIN if deprecated else None,
        )
        for name, check, types, deprecated, text in _BASE_RULES
    ]
    rules += [
        policy.DocumentedRuleDefault(
            name,
            check,
            f"{method} {path}",
            [{"method": method, "path": path}],
            scope_types=scope(["project"]),
        )
        for name, check, method, path in _PLACEMENT_RULES
    ]
    rules += [
        policy.DocumentedRuleDefault(
            name,
            SCHEDULER_DEFAULT,
            f"{method} {{scheduler_prefix}}{path}",
            [{"method": method, "path": "{scheduler_prefix}" + path}],
        )
        for name, method, path in _SCHEDULER_RULES
    ]
    return rules


def _read_policy_file(path: Path, known: set[str]) -> None:
    """Refuse a policy file oslo.policy would half-ignore: unreadable, not a mapping of
    rule names to check strings, an unknown rule name, or a check string that does not parse."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"oslo_policy.policy_file {path}: cannot read it ({exc})") from None
    try:
        rules = policy.parse_file_contents(text)
    except ValueError as exc:
        raise ConfigError(f"policy file {path} is neither YAML nor JSON: {exc}") from None
    if not isinstance(rules, dict):
        raise ConfigError(f"policy file {path}: expected a mapping of rule names to checks")
    unknown = sorted(str(name) for name in rules if name not in known)
    if unknown:
        raise ConfigError(f"policy file {path}: unknown rule(s) {', '.join(unknown)}")
    for name, check in rules.items():
        if not isinstance(check, str):
            raise ConfigError(f"policy file {path}: rule {name} must be a string")
        # oslo.policy logs a check it cannot parse and denies everything: say so instead.
        parsed = policy.RuleDefault(name, check).check
        if str(parsed) == "!" and check.strip() != "!":
            raise ConfigError(f"policy file {path}: rule {name}: cannot parse {check!r}")


class PolicyEngine:
    """An oslo.policy enforcer with allotment's rules and ``[oslo_policy]`` options."""

    def __init__(
        self,
        *,
        enforce_scope: bool = True,
        enforce_new_defaults: bool = True,
        policy_file: Path | None = None,
    ) -> None:
        conf = cfg.ConfigOpts()
        policy_opts.set_defaults(conf)
        # A private option set: nothing is read from /etc or the command line.
        conf([], project="allotment", default_config_files=[], default_config_dirs=[])
        conf.set_override("enforce_new_defaults", enforce_new_defaults, group="oslo_policy")
        conf.set_override("policy_dirs", [], group="oslo_policy")
        rules = default_rules(enforce_scope)
        if policy_file is not None:
            policy_file = policy_file.resolve()
            _read_policy_file(policy_file, {rule.name for rule in rules})
            conf.set_override("policy_file", str(policy_file), group="oslo_policy")
        self.policy_file = policy_file
        self._enforcer = policy.Enforcer(conf)
        # Upstream silences these too: every default changed when scopes came.
        self._enforcer.suppress_default_change_warnings = True
        self._enforcer.suppress_deprecation_warnings = True
        self._enforcer.register_defaults(rules)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._enforcer.load_rules()
        try:
            self._enforcer.check_rules(raise_on_violation=True)
        except policy.InvalidDefinitionError as exc:
            raise ConfigError(
                f"policy file {policy_file}: rules refer to undefined or cyclic rules: {exc}"
            ) from None
        # Read once, checked once: a changed file takes effect on restart, never half-valid.
        self._enforcer.use_conf = False

    def authorize(
        self, ctx: RequestContext, rule: str, target: Mapping[str, Any] | None = None
    ) -> None:
        """Raise Forbidden unless ``ctx`` may perform ``rule`` (on ``target``, by default the
        caller's own project and user, as upstream)."""
        if not isinstance(ctx, RequestContext):  # a missing or foreign context: refused
            raise Forbidden(f"Policy does not allow {rule} to be performed{_needs(rule)}.")
        if target is None:
            target = {"project_id": ctx.project_id, "user_id": ctx.user_id}
        if not self._allowed(rule, tuple(sorted(target.items())), ctx.policy_key()):
            raise Forbidden(f"Policy does not allow {rule} to be performed{_needs(rule)}.")

    @functools.lru_cache(maxsize=8192)  # noqa: B019 - one engine per process, kept for good
    def _allowed(
        self,
        rule: str,
        target: tuple[tuple[str, Any], ...],
        creds: tuple[tuple[str, Any], ...],
    ) -> bool:
        """The decision, remembered: the rules never change after start-up, and oslo.policy
        spends ~80 us a check introspecting check signatures."""
        values = dict(creds)
        values["roles"] = list(values["roles"])
        return bool(self._enforcer.authorize(rule, dict(target), values))


_engine: PolicyEngine | None = None


def configure(engine: PolicyEngine) -> PolicyEngine:
    """Make ``engine`` the one ``authorize`` uses in this process."""
    global _engine
    _engine = engine
    return engine


def current() -> PolicyEngine:
    """The process's engine; upstream's defaults until ``configure`` is called."""
    global _engine
    if _engine is None:
        _engine = PolicyEngine()
    return _engine


def authorize(ctx: RequestContext, rule: str, target: Mapping[str, Any] | None = None) -> None:
    """Raise Forbidden unless ``ctx`` may perform ``rule``."""
    current().authorize(ctx, rule, target)
