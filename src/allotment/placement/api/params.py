"""Parsing of the query parameters ``GET /resource_providers`` and ``GET
/allocation_candidates`` share: ``resources``, ``required`` (forbidden ``!``, any-of ``in:``),
``member_of`` (``in:``, ``!``, repetition), ``in_tree`` and the granular suffixed groups.

The rules and every message follow upstream Placement per microversion, because clients
(nova's report client, osc-placement) are written against exactly those. Schema checks run
before this module, so keys and value types are already known to be allowed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence

from allotment import errors
from allotment.numbers import DB_MAX_INT, parse_int
from allotment.placement import microversions
from allotment.placement.api.microversion import Microversion
from allotment.placement.model import CandidateRequest, RequestGroup
from allotment.placement.schemas import is_uuid_like

Query = Sequence[tuple[str, str]]


_GROUP_KEYS = "resources|required|member_of|in_tree"
_DIGITS = re.compile(r"[+-]?[0-9]+", re.ASCII)
_KEY = re.compile(rf"^({_GROUP_KEYS})([1-9][0-9]*)?$")
_KEY_1_33 = re.compile(rf"^({_GROUP_KEYS})([a-zA-Z0-9_-]{{1,64}})?$")


def _bad(message: str, code: str | None = None) -> errors.InvalidInput:
    return errors.InvalidInput(message, code=code)


def values_of(query: Query, key: str) -> list[str]:
    return [value for name, value in query if name == key]


def parse_resources(value: str) -> dict[str, int]:
    """``VCPU:2,MEMORY_MB:1024`` -> ``{"VCPU": 2, "MEMORY_MB": 1024}``."""
    if value.strip() == "":
        raise _bad(
            "Badly formed resources parameter. Expected resources query string parameter in "
            "form: ?resources=VCPU:2,MEMORY_MB:1024. Got: empty string."
        )
    result: dict[str, int] = {}
    for item in value.split(","):
        try:
            name, raw_amount = item.split(":")
        except ValueError:
            raise _bad(
                "Badly formed resources parameter. Expected resources query string parameter "
                f"in form: ?resources=VCPU:2,MEMORY_MB:1024. Got: {item}."
            ) from None
        amount = parse_int(raw_amount, minimum=-DB_MAX_INT - 1)
        if amount is None:
            if _DIGITS.fullmatch(raw_amount.strip()):
                raise _bad(
                    f"Requested resource {name} amount {raw_amount} is out of range: amounts "
                    f"are at most {DB_MAX_INT}."
                )
            raise _bad(
                f"Requested resource {name} expected positive integer amount. Got: {raw_amount}."
            )
        if amount < 1:
            raise _bad(f"Requested resource {name} requires amount >= 1. Got: {amount}.")
        result[name] = amount
    return result


def parse_traits(
    value: str, *, allow_forbidden: bool, allow_any: bool
) -> tuple[list[frozenset[str]], set[str]]:
    """One ``required`` value: any-of sets (ANDed) and forbidden names."""
    if value.startswith("in:"):
        if not allow_any:
            raise _bad(
                "Invalid query string parameters: The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' "
                f"only supported since microversion 1.39. Got: {value}"
            )
        any_of = {name.strip() for name in value[3:].split(",")}
        if not all(any_of):
            raise _bad(
                "Invalid query string parameters: Expected 'required' parameter value of the "
                f"form: in:HW_CPU_X86_VMX,CUSTOM_MAGIC. Got an empty trait in: {value}"
            )
        if any(name.startswith("!") for name in any_of):
            raise _bad(
                "Invalid query string parameters: The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' "
                f"does not support forbidden traits. Got: {value}"
            )
        return [frozenset(any_of)], set()
    names = [name.strip() for name in value.split(",")]
    # Upstream strips any number of leading "!" ("!!FOO" forbids FOO); kept for parity.
    forbidden = {name.lstrip("!") for name in names if name.startswith("!")}
    if not all(names) or not all(forbidden):
        form = "HW_CPU_X86_VMX,!CUSTOM_MAGIC" if allow_forbidden else "HW_CPU_X86_VMX,CUSTOM_MAGIC"
        raise _bad(
            "Invalid query string parameters: Expected 'required' parameter value of the "
            f"form: {form}. Got an empty trait in: {value}"
        )
    if forbidden and not allow_forbidden:
        raise _bad(
            "Invalid query string parameters: Expected 'required' parameter value of the "
            f"form: HW_CPU_X86_VMX,CUSTOM_MAGIC. Got: {value}"
        )
    return [frozenset({name}) for name in names if not name.startswith("!")], forbidden


def traits_param(
    values: Sequence[str], mv: Microversion
) -> tuple[tuple[frozenset[str], ...], frozenset[str]]:
    """All values of one ``required[$S]`` key; before 1.39 only the last one counts."""
    allow_any = mv.at_least(microversions.ANY_TRAITS)
    if not allow_any:
        values = values[-1:]
    required: list[frozenset[str]] = []
    forbidden: set[str] = set()
    for value in values:
        any_of, nots = parse_traits(
            value, allow_forbidden=mv.at_least(microversions.FORBIDDEN_TRAITS), allow_any=allow_any
        )
        required += any_of
        forbidden |= nots
    return tuple(required), frozenset(forbidden)


def _member_of_value(value: str) -> tuple[set[str], set[str]]:
    if "," in value and not value.startswith(("in:", "!in:")):
        raise _bad(
            "Multiple values for 'member_of' must be prefixed with the 'in:' or '!in:' keyword "
            f"using the valid microversion. Got: {value}"
        )
    required: set[str] = set()
    forbidden: set[str] = set()
    if value.startswith("!in:"):
        forbidden = set(value[4:].split(","))
    elif value.startswith("!"):
        forbidden = {value[1:]}
    elif value.startswith("in:"):
        required = set(value[3:].split(","))
    else:
        required = {value}
    for agg in sorted(required | forbidden):
        if not is_uuid_like(agg):
            raise _bad(
                "Invalid query string parameters: Expected 'member_of' parameter to contain "
                f"valid UUID(s). Got: {agg}"
            )
    return required, forbidden


def member_of_param(
    values: Sequence[str], suffix: str, mv: Microversion
) -> tuple[tuple[frozenset[str], ...], frozenset[str]]:
    """All values of one ``member_of[$S]`` key: any-of sets (ANDed) and forbidden uuids."""
    if not mv.at_least(microversions.MULTI_MEMBER_OF) and len(values) > 1:
        raise _bad(f"Multiple member_of{suffix} parameters are not supported")
    required: list[frozenset[str]] = []
    forbidden: set[str] = set()
    for value in values:
        any_of, nots = _member_of_value(value)
        if any_of:
            required.append(frozenset(_canonical_uuid(u) for u in any_of))
        if nots:
            if not mv.at_least(microversions.FORBIDDEN_AGGREGATES):
                raise _bad(
                    f"Forbidden member_of{suffix} parameters are not supported in the "
                    "specified microversion"
                )
            forbidden |= {_canonical_uuid(u) for u in nots}
    return tuple(required), frozenset(forbidden)


def _canonical_uuid(value: str) -> str:
    """Uuids are compared in their canonical (dashed, lower case) spelling."""
    return str(uuid.UUID(value))


def parse_in_tree(value: str) -> str:
    stripped = value.strip()
    if not is_uuid_like(stripped):
        raise _bad(
            "Invalid query string parameters: Expected 'in_tree' parameter to be a format of "
            f"uuid. Got: {value}"
        )
    return _canonical_uuid(stripped)


class _GroupBuilder:
    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.resources: dict[str, int] = {}
        self.required: tuple[frozenset[str], ...] = ()
        self.forbidden: frozenset[str] = frozenset()
        self.member_of: tuple[frozenset[str], ...] = ()
        self.forbidden_aggs: frozenset[str] = frozenset()
        self.in_tree: str | None = None

    def build(self) -> RequestGroup:
        return RequestGroup(
            suffix=self.suffix,
            resources=self.resources,
            required_traits=self.required,
            forbidden_traits=self.forbidden,
            member_of=self.member_of,
            forbidden_aggregates=self.forbidden_aggs,
            in_tree=self.in_tree,
        )


def request_groups(
    query: Query, mv: Microversion, same_subtrees: Sequence[frozenset[str]] = ()
) -> tuple[RequestGroup, ...]:
    """The request groups of a query, in the order their first key appears."""
    pattern = _KEY_1_33 if mv.at_least(microversions.VERBOSE_SUFFIXES) else _KEY
    builders: dict[str, _GroupBuilder] = {}
    seen: set[str] = set()
    for key, value in query:
        match = pattern.match(key)
        if not match:
            continue
        prefix, suffix = match.group(1), match.group(2) or ""
        group = builders.setdefault(suffix, _GroupBuilder(suffix))
        if prefix == "resources":
            group.resources = parse_resources(value)
        elif prefix == "in_tree":
            group.in_tree = parse_in_tree(value)
        elif key not in seen:
            seen.add(key)
            if prefix == "required":
                group.required, group.forbidden = traits_param(values_of(query, key), mv)
            else:
                group.member_of, group.forbidden_aggs = member_of_param(
                    values_of(query, key), suffix, mv
                )
    groups = [b.build() for b in builders.values()]
    if mv.at_least(microversions.SAME_SUBTREE):
        _check_resourceless(groups, same_subtrees)
    else:
        _check_orphans(groups)
    if mv.at_least(microversions.FORBIDDEN_TRAITS):
        _check_conflicts(groups)
    return tuple(groups)


def _check_resourceless(
    groups: Sequence[RequestGroup], same_subtrees: Sequence[frozenset[str]]
) -> None:
    resourceless = sorted(g.suffix for g in groups if not g.resources)
    if len(resourceless) == len(groups):
        raise _bad(
            "There must be at least one resources or resources[$S] parameter.",
            errors.QUERYPARAM_MISSING_VALUE,
        )
    in_subtrees = set().union(*same_subtrees)
    bad = [s for s in resourceless if s not in in_subtrees]
    if bad:
        raise _bad(
            "Resourceless suffixed group request should be specified in `same_subtree` query "
            f"param: bad group(s) - {bad}.",
            errors.QUERYPARAM_BAD_VALUE,
        )
    known = [g.suffix for g in groups]
    unknown = sorted(s for s in in_subtrees if s not in known)
    if unknown:
        raise _bad(
            f"Real suffixes should be specified in `same_subtree`: {unknown} not found in {known}.",
            errors.QUERYPARAM_BAD_VALUE,
        )


def _check_orphans(groups: Sequence[RequestGroup]) -> None:
    orphans = [f"required{g.suffix}" for g in groups if g.required_traits and not g.resources]
    if orphans:
        raise _bad(
            "All traits parameters must be associated with resources.  Found the following "
            f"orphaned traits keys: {', '.join(orphans)}"
        )
    orphans = [
        f"member_of{g.suffix}"
        for g in groups
        if not g.resources and (g.member_of or g.forbidden_aggregates)
    ]
    if orphans:
        raise _bad(
            "All member_of parameters must be associated with resources. Found the following "
            f"orphaned member_of keys: {', '.join(orphans)}"
        )
    if not all(g.resources for g in groups):
        raise _bad("All request groups must specify resources.")
    if not groups:
        raise _bad("At least one request group (`resources` or `resources{$S}`) is required.")


def _check_conflicts(groups: Iterable[RequestGroup]) -> None:
    conflicts = [
        f"required{g.suffix}: ({', '.join(sorted(any_of))})"
        for g in groups
        for any_of in g.required_traits
        if all(name in g.forbidden_traits for name in any_of)
    ]
    if conflicts:
        raise _bad(
            "Conflicting required and forbidden traits found in the following traits keys: "
            f"{', '.join(sorted(conflicts))}"
        )


def _first(query: Query, key: str) -> str | None:
    found = values_of(query, key)
    return found[0] if found else None


def _limit(value: str | None) -> int | None:
    """``limit`` (the schema checked only the last one given): a positive ASCII integer; any
    limit above the database's integers means "no limit" as well as that bound does."""
    if value is None:
        return None
    digits = value.lstrip("+").lstrip("0")
    if not _DIGITS.fullmatch(value) or value.startswith("-") or not digits:
        raise _bad(
            f"Invalid query string parameters: limit must be a positive integer. Got: {value}"
        )
    return DB_MAX_INT if len(digits) > 10 else min(int(digits), DB_MAX_INT)


def candidate_request(query: Query, mv: Microversion) -> CandidateRequest:
    """The whole ``GET /allocation_candidates`` query (already schema-checked)."""
    # Upstream reads the first limit and group_policy although the schema checked the last.
    limit = _first(query, "limit")
    root_required: frozenset[str] = frozenset()
    root_forbidden: frozenset[str] = frozenset()
    roots = values_of(query, "root_required")
    if roots:
        if len(roots) > 1:
            raise _bad(
                "Query parameter 'root_required' may be specified only once.",
                errors.ILLEGAL_DUPLICATE_QUERYPARAM,
            )
        any_of, nots = parse_traits(roots[0], allow_forbidden=True, allow_any=False)
        root_required = frozenset(name for names in any_of for name in names)
        root_forbidden = frozenset(nots)
        conflicts = sorted(root_required & root_forbidden)
        if conflicts:
            raise _bad(
                "Conflicting required and forbidden traits found in root_required: "
                f"{', '.join(conflicts)}",
                errors.QUERYPARAM_BAD_VALUE,
            )
    same_subtrees: list[frozenset[str]] = []
    for value in values_of(query, "same_subtree"):
        suffixes = frozenset(item.strip() for item in value.split(","))
        if "" in suffixes:
            raise _bad(
                "Empty string (unsuffixed group) can not be specified in `same_subtree` ",
                errors.QUERYPARAM_BAD_VALUE,
            )
        same_subtrees.append(suffixes)
    groups = request_groups(query, mv, same_subtrees)
    group_policy = _first(query, "group_policy")
    if not group_policy and sum(1 for g in groups if g.use_same_provider) > 1:
        raise _bad(
            'The "group_policy" parameter is required when specifying more than one '
            '"resources{N}" parameter.'
        )
    return CandidateRequest(
        groups=groups,
        limit=_limit(limit),
        group_policy=group_policy,
        root_required=root_required,
        root_forbidden=root_forbidden,
        same_subtrees=tuple(same_subtrees),
        nested_aware=mv.at_least(microversions.NESTED_CANDIDATES),
    )
