"""Flavor and image → the placement query (Nova's ``ResourceRequest``).

``ResourceRequest.from_spec`` reads the flavor's ``resources[$S]:RC``, ``trait[$S]:T`` and
``group_policy`` extra specs, the image's ``traits_required``, translates CPU pinning
(``hw:cpu_policy`` and friends → ``PCPU`` / ``HW_CPU_HYPERTHREADING``) and PCI aliases
when ``pci_in_placement`` is on, then fills ``VCPU``/``MEMORY_MB``/``DISK_GB`` from the
flavor where the extra specs did not. Request filters then add aggregates and root traits;
``apply_destination`` pins the query to a requested or forced host.

Where Nova logs a warning and drops a malformed extra spec, this raises InvalidInput
(400): a flavor that silently means less than it says is how hosts end up wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Literal

import os_resource_classes as orc
import os_traits

from allotment.config import Settings
from allotment.errors import InvalidInput, NoValidHost
from allotment.numbers import DB_MAX_INT, parse_int
from allotment.scheduler.explain import Explanation, Funnel
from allotment.scheduler.numa import cpu_constraints
from allotment.scheduler.pci import pci_requests
from allotment.scheduler.request import RequestSpec
from allotment.scheduler.snapshot import HostSnapshot

_KEY = re.compile(r"^(resources|trait)([a-zA-Z0-9_-]{1,64})?:(.*)$")
_SUFFIX = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
GroupPolicy = Literal["none", "isolate"]
# Suffix of the request groups made from allotment's own ``[pci] alias`` (one per device).
PCI_GROUP_PREFIX = "_pci_"


@dataclass
class ResourceGroup:
    """One placement request group (``resources$S``, ``required$S``, ``member_of$S``...)."""

    suffix: str = ""
    resources: dict[str, int] = field(default_factory=dict)
    # Each item is an any-of set (``required=in:A,B``); every item must hold.
    required_traits: list[frozenset[str]] = field(default_factory=list)
    forbidden_traits: set[str] = field(default_factory=set)
    # Each item is an any-of set of aggregate uuids; every item must hold.
    member_of: list[frozenset[str]] = field(default_factory=list)
    forbidden_aggregates: set[str] = field(default_factory=set)
    in_tree: str | None = None

    def require_trait(self, trait: str) -> None:
        item = frozenset({trait})
        if item not in self.required_traits:
            self.required_traits.append(item)

    @property
    def required_trait_names(self) -> set[str]:
        return {t for item in self.required_traits if len(item) == 1 for t in item}

    def is_empty(self) -> bool:
        return not (
            self.resources
            or self.required_traits
            or self.forbidden_traits
            or self.member_of
            or self.forbidden_aggregates
        )


@dataclass
class ResourceRequest:
    """The whole allocation-candidates query for one request."""

    groups: dict[str, ResourceGroup] = field(default_factory=dict)
    group_policy: GroupPolicy | None = None
    same_subtree: list[frozenset[str]] = field(default_factory=list)
    root_required: set[str] = field(default_factory=set)
    root_forbidden: set[str] = field(default_factory=set)
    # None: no limit (Nova lifts max_placement_results for group / same / different host).
    limit: int | None = None
    # Whether hw:cpu_policy asked for pinned CPUs (the PCPU translation happened).
    cpu_pinning_requested: bool = False

    def group(self, suffix: str = "") -> ResourceGroup:
        found = self.groups.get(suffix)
        if found is None:
            found = self.groups[suffix] = ResourceGroup(suffix)
        return found

    @property
    def unsuffixed(self) -> ResourceGroup:
        return self.group("")

    def merged_resources(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for group in self.groups.values():
            for rc, amount in group.resources.items():
                merged[rc] = merged.get(rc, 0) + amount
        return merged

    @property
    def all_required_traits(self) -> set[str]:
        found: set[str] = set()
        for group in self.groups.values():
            found |= group.required_trait_names
        return found

    def require_aggregates(self, uuids: set[str] | frozenset[str]) -> None:
        """Any of ``uuids`` (AND'ed with aggregates required before)."""
        self.unsuffixed.member_of.append(frozenset(uuids))

    def canonical(self) -> Hashable:
        """The query as a hashable value, equal for requests placement answers alike
        (order of any-of sets and of groups does not matter; that of ``member_of`` items
        and same_subtree does not either, as placement ANDs them)."""
        groups = tuple(
            sorted(
                (
                    group.suffix,
                    tuple(sorted(group.resources.items())),
                    frozenset(group.required_traits),
                    frozenset(group.forbidden_traits),
                    frozenset(group.member_of),
                    frozenset(group.forbidden_aggregates),
                    group.in_tree,
                )
                for group in self.groups.values()
            )
        )
        return (
            groups,
            self.group_policy,
            frozenset(self.same_subtree),
            frozenset(self.root_required),
            frozenset(self.root_forbidden),
            self.limit,
        )

    def suffixed_count(self) -> int:
        return sum(1 for suffix in self.groups if suffix)

    def _strip(self) -> None:
        for group in self.groups.values():
            group.resources = {rc: n for rc, n in group.resources.items() if n}
        self.groups = {s: g for s, g in self.groups.items() if not g.is_empty()}

    @classmethod
    def from_spec(cls, spec: RequestSpec, settings: Settings) -> ResourceRequest:
        request = cls(limit=settings.scheduler.max_placement_results)
        flavor = spec.flavor
        from_flavor = request._extra_specs(spec)
        for trait in spec.image_properties.get("traits_required", []) or []:
            request.unsuffixed.require_trait(str(trait))
        request._pinning(spec)
        outside = request._pci(spec, settings) + request._requested_resources(spec)
        request._request_level(spec)
        merged = request.merged_resources()
        if orc.VCPU not in merged and orc.PCPU not in merged:
            request.unsuffixed.resources[orc.VCPU] = flavor.vcpus
        if orc.MEMORY_MB not in merged:
            request.unsuffixed.resources[orc.MEMORY_MB] = flavor.memory_mb
        if orc.DISK_GB not in merged:
            disk = flavor.ephemeral_gb + math.ceil(flavor.swap / 1024)
            if not spec.is_bfv:
                disk += flavor.root_gb
            request.unsuffixed.resources[orc.DISK_GB] = disk
        request._strip()
        request._check_amounts()
        if request.suffixed_count() >= 2 and request.group_policy is None:
            if from_flavor >= 2:
                raise InvalidInput(
                    f"The flavor defines {from_flavor} numbered request groups but no "
                    "group_policy; add the extra spec group_policy=none (groups may share "
                    "providers) or group_policy=isolate (each group on its own provider)."
                )
            # Groups from outside the flavor (PCI) with no policy: Nova defaults to none.
            request.group_policy = "none" if outside else None
        return request

    def _check_amounts(self) -> None:
        """Placement stores amounts in 32-bit columns: a sum the flavor makes (DISK_GB is
        root + ephemeral + swap) must fit as well as each number given."""
        for group in self.groups.values():
            for rc, amount in group.resources.items():
                if amount > DB_MAX_INT:
                    raise InvalidInput(
                        f"The flavor asks for {amount} {rc}; placement takes at most "
                        f"{DB_MAX_INT} of a resource class per request group."
                    )

    def _extra_specs(self, spec: RequestSpec) -> int:
        """Parse ``resources*`` / ``trait*`` / ``group_policy``; returns the number of
        numbered groups the flavor itself defines."""
        for key, value in spec.extra_specs.items():
            if key == "group_policy":
                if value not in ("none", "isolate"):
                    raise InvalidInput(f"group_policy={value!r} must be 'none' or 'isolate'")
                self.group_policy = value  # type: ignore[assignment]
                continue
            match = _KEY.match(key)
            if not match:
                continue
            prefix, suffix, name = match.groups()
            group = self.group(suffix or "")
            if prefix == "resources":
                if not (name.startswith(orc.CUSTOM_NAMESPACE) or name in orc.STANDARDS):
                    raise InvalidInput(
                        f"Extra spec {key}: {name!r} is neither a standard resource class "
                        "nor a CUSTOM_ one"
                    )
                amount = parse_int(value)
                if amount is None:
                    raise InvalidInput(
                        f"Extra spec {key}={value!r}: amounts must be non-negative integers up to "
                        f"{DB_MAX_INT}"
                    )
                group.resources[name] = amount
            elif value == "required":
                group.require_trait(name)
            elif value == "forbidden":
                group.forbidden_traits.add(name)
            else:
                raise InvalidInput(
                    f"Extra spec {key}={value!r}: trait values are 'required' or 'forbidden'"
                )
        return sum(1 for suffix in self.groups if suffix)

    def _pinning(self, spec: RequestSpec) -> None:
        """Nova's ``_translate_pinning_policies``: dedicated CPUs are PCPU, not VCPU."""
        flavor = spec.flavor
        cpu = cpu_constraints(flavor.vcpus, spec.extra_specs, spec.image_properties)
        if cpu.explicit:
            return
        if cpu.policy in ("dedicated", "mixed"):
            self.cpu_pinning_requested = cpu.policy == "dedicated"
            pcpus = len(cpu.dedicated) + (1 if cpu.emulator_threads_isolate else 0)
            if cpu.policy == "mixed":
                self.unsuffixed.resources[orc.VCPU] = flavor.vcpus - len(cpu.dedicated)
            self.unsuffixed.resources[orc.PCPU] = pcpus
        if "trait:HW_CPU_HYPERTHREADING" in spec.extra_specs:
            return
        if cpu.thread_policy == "isolate":
            self.unsuffixed.forbidden_traits.add(os_traits.HW_CPU_HYPERTHREADING)
        elif cpu.thread_policy == "require":
            self.unsuffixed.require_trait(os_traits.HW_CPU_HYPERTHREADING)

    def _requested_resources(self, spec: RequestSpec) -> int:
        """Nova's ``_add_request_group``: each group from outside the flavor (a Neutron
        port's QoS or SR-IOV request, a Cyborg device profile) is a numbered group whose
        suffix is its ``requester_id``, so the answer's ``mappings`` tell Nova which
        provider serves that port or device."""
        for index, group in enumerate(spec.requested_resources):
            where = f"requested_resources[{index}]"
            suffix = group.requester_id
            if not suffix:
                raise InvalidInput(
                    f"{where}: a request group from outside the flavor needs a requester_id "
                    "(the port or device profile it is for); it becomes the group's suffix."
                )
            if not _SUFFIX.match(suffix):
                raise InvalidInput(
                    f"{where}: requester_id {suffix!r} cannot be a placement group suffix "
                    "(1 to 64 of a-z, A-Z, 0-9, _ and -)."
                )
            if suffix in self.groups:
                raise InvalidInput(
                    f"{where}: requester_id {suffix!r} is already a request group suffix "
                    "(of the flavor or of another requested resource)."
                )
            target = self.group(suffix)
            for rc, amount in group.resources.items():
                if amount < 0 or amount > DB_MAX_INT:
                    raise InvalidInput(
                        f"{where}.resources.{rc}: amounts are 0 to {DB_MAX_INT}, not {amount}."
                    )
                target.resources[rc] = amount
            for trait in sorted(group.required_traits):
                target.require_trait(trait)
            target.forbidden_traits |= set(group.forbidden_traits)
            target.member_of += [frozenset(item) for item in group.aggregates if item]
            target.forbidden_aggregates |= set(group.forbidden_aggregates)
            target.in_tree = group.in_tree
            if not any(target.resources.values()) and not (
                target.required_traits
                or target.forbidden_traits
                or target.member_of
                or target.forbidden_aggregates
            ):
                raise InvalidInput(
                    f"{where}: the request group of {suffix!r} asks for nothing (no resources, "
                    "traits or aggregates)."
                )
        return len(spec.requested_resources)

    def _request_level(self, spec: RequestSpec) -> None:
        """``request_level_params``: root traits and same-subtree groups (Nova's
        ``RequestLevelParams``), added to what the request filters put there."""
        params = spec.request_level_params
        if params is None:
            return
        self.root_required |= set(params.root_required)
        self.root_forbidden |= set(params.root_forbidden)
        for suffixes in params.same_subtree:
            unknown = [s for s in suffixes if s not in self.groups]
            if unknown:
                raise InvalidInput(
                    f"request_level_params.same_subtree names request groups that do not "
                    f"exist: {', '.join(unknown)}."
                )
            self.same_subtree.append(frozenset(suffixes))

    def _pci(self, spec: RequestSpec, settings: Settings) -> int:
        """With ``pci_in_placement``, one request group per requested device. A spec
        with Nova's PCI requests has its groups in ``requested_resources`` already."""
        if not settings.filter_scheduler.pci_in_placement or spec.pci_requests:
            return 0
        requests = pci_requests(spec.extra_specs, settings.pci.alias)
        if not requests:
            return 0
        aliases = {a.name: a for a in settings.pci.alias}
        added = 0
        for request in requests:
            alias = aliases[request.alias]
            rc = alias.resource_class or orc.normalize_name(
                f"PCI_{alias.vendor_id or ''}_{alias.product_id or ''}"
            )
            if not rc.startswith(orc.CUSTOM_NAMESPACE) and rc not in orc.STANDARDS:
                rc = orc.normalize_name(rc)
            for index in range(request.count):
                group = self.group(f"{PCI_GROUP_PREFIX}{request.alias}_{index}")
                group.resources[rc] = 1
                for trait in alias.traits:
                    group.require_trait(trait)
                added += 1
        return added


def no_such_host(funnel: Funnel, host: str | None, node: str | None) -> NoValidHost:
    """The requested or forced host/node is not a known compute node."""
    funnel.record("requested_destination", "request_filter", after=0, host=host, node=node)
    summary = f"No such host - host: {host} node: {node}"
    return NoValidHost(summary, explanation=Explanation(summary, funnel).to_dict())


def apply_destination(
    request: ResourceRequest, spec: RequestSpec, snapshot: HostSnapshot, funnel: Funnel
) -> None:
    """Nova's ``resources_from_request_spec`` destination handling: requested aggregates,
    a requested or forced host/node (→ ``in_tree``), and lifting the candidate limit."""
    destination = spec.requested_destination
    host = node = None
    if destination is not None:
        host, node = destination.host, destination.node
        for item in destination.aggregates:
            uuids = frozenset(u.strip() for u in item.split(",") if u.strip())
            if uuids:
                request.require_aggregates(uuids)
        if destination.forbidden_aggregates:
            # member_of=!in: on the unsuffixed group, as Nova adds them.
            request.unsuffixed.forbidden_aggregates |= set(destination.forbidden_aggregates)
            funnel.record(
                "forbidden_aggregates",
                "request_filter",
                forbidden_aggregates=sorted(destination.forbidden_aggregates),
            )
    if spec.force_hosts:
        host = host or spec.force_hosts[0]
    if spec.force_nodes:
        node = node or spec.force_nodes[0]
    if host or node:
        rows = snapshot.node_rows(host, node)
        if not rows and host is not None:
            # Nova looks hosts up in its database, whose collation ignores case.
            rows = [
                row
                for name in snapshot.rows_of_host
                if name.lower() == host.lower()
                for row in snapshot.node_rows(name, node)
            ]
        if not rows:
            raise no_such_host(funnel, host, node)
        if len(rows) == 1:
            request.unsuffixed.in_tree = snapshot.uuids[rows[0]]
        else:
            request.limit = None
    if spec.instance_group is not None or any(
        key in spec.scheduler_hints for key in ("group", "same_host", "different_host")
    ):
        request.limit = None
