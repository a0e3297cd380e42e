"""What the scheduler needs from placement, and nothing more: the ``PlacementClient``
protocol, with one implementation calling the embedded placement in-process
(``client.placement_local``) and one speaking HTTP to any Placement
(``client.placement_http``: ours or OpenStack's).

The scheduler asks for allocation candidates once per request (``Offer``), claims the
chosen hosts' allocation requests (``Claim``; several in one all-or-nothing call) and
releases claims when a multi-instance request fails. When placement finds nothing it
explains which constraint removed how many hosts (``ConstraintCount``) as precisely as
the client can know.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from allotment.context import RequestContext
from allotment.errors import AllotmentError
from allotment.scheduler.resource_request import ResourceRequest
from allotment.scheduler.snapshot import FloatArray

# The allocation-request format the selections carry (upstream's, as of this microversion).
ALLOCATION_REQUEST_VERSION = "1.39"
# Placement consumer type of the claims (microversion 1.38).
INSTANCE_CONSUMER_TYPE = "INSTANCE"


@dataclass(frozen=True, slots=True)
class Candidates:
    """What placement offered, by root provider (compute node) uuid, with the free
    resources the RAM / CPU / disk weighers read, aligned by position."""

    uuids: Sequence[str]
    free_ram_mb: FloatArray
    free_disk_mb: FloatArray
    free_vcpus: FloatArray

    @classmethod
    def from_provider_summaries(cls, summaries: Mapping[str, Mapping[str, Any]]) -> Candidates:
        """From ``GET /allocation_candidates`` provider summaries: each root's free
        VCPU / MEMORY_MB / DISK_GB summed over its tree (capacity - used)."""
        roots: list[str] = []
        free: dict[str, dict[str, float]] = {}
        for uuid, summary in summaries.items():
            root = summary.get("root_provider_uuid") or uuid
            if root not in free:
                roots.append(root)
                free[root] = {"VCPU": 0.0, "MEMORY_MB": 0.0, "DISK_GB": 0.0}
            for rc, usage in summary.get("resources", {}).items():
                if rc in free[root]:
                    free[root][rc] += usage["capacity"] - usage["used"]
        return cls(
            uuids=roots,
            free_ram_mb=np.array([free[r]["MEMORY_MB"] for r in roots], np.float64),
            free_disk_mb=np.array([free[r]["DISK_GB"] * 1024 for r in roots], np.float64),
            free_vcpus=np.array([free[r]["VCPU"] for r in roots], np.float64),
        )


@dataclass(frozen=True, slots=True)
class AllocationRequest:
    """One way to satisfy the request: amounts per provider, and which providers served
    each request group (keyed by suffix, "" for the unsuffixed group)."""

    allocations: Mapping[str, Mapping[str, int]]
    mappings: Mapping[str, Sequence[str]]

    def to_dict(self) -> dict[str, Any]:
        """Upstream's JSON shape (``GET /allocation_candidates`` at 1.34+)."""
        return {
            "allocations": {
                rp: {"resources": dict(resources)} for rp, resources in self.allocations.items()
            },
            "mappings": {suffix: list(rps) for suffix, rps in self.mappings.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AllocationRequest:
        return cls(
            allocations={
                rp: {rc: int(n) for rc, n in body["resources"].items()}
                for rp, body in data["allocations"].items()
            },
            mappings={k: tuple(v) for k, v in data.get("mappings", {}).items()},
        )


class Offer(abc.ABC):
    """The allocation candidates placement returned for one request, by host.

    ``hosts`` has one entry per root provider (compute node) that appears in some
    allocation request, with the free resources the weighers read; ``requests_of(i)`` are
    the indexes of host ``i``'s allocation requests in placement's order; ``free`` is a
    provider's capacity minus usage for one class, as placement saw it.
    """

    hosts: Candidates
    # Allocation requests placement returned, and providers it summarized.
    total_requests: int
    total_providers: int

    @abc.abstractmethod
    def requests_of(self, host: int) -> Sequence[int]: ...

    @abc.abstractmethod
    def allocation_request(self, index: int) -> AllocationRequest: ...

    @abc.abstractmethod
    def free(self, provider: str, resource_class: str) -> int: ...


@dataclass(frozen=True, slots=True)
class ConstraintCount:
    """How many hosts (trees) were left after one placement constraint was applied, in
    the order the constraints are listed, and how many it alone kept out (hosts that
    every other constraint admits)."""

    constraint: str  # "resources", "required_trait", "forbidden_trait", "member_of", ...
    value: Any
    before: int
    after: int
    group: str = ""
    only_blocker: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "constraint": self.constraint,
            "value": self.value,
            "before": self.before,
            "after": self.after,
        }
        if self.group:
            out["group"] = self.group
        if self.only_blocker is not None:
            out["only_blocker"] = self.only_blocker
        return out


@dataclass(frozen=True, slots=True)
class PlacementFunnel:
    """Why placement offered nothing: hosts considered, then constraint by constraint.

    ``method`` says how the counts were obtained (and so how exact they are).
    """

    considered: int | None
    constraints: list[ConstraintCount] = field(default_factory=list)
    method: str = ""

    def detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        if self.constraints:
            out["constraints"] = [c.to_dict() for c in self.constraints]
            emptied = next((c for c in self.constraints if c.after == 0), None)
            if emptied is not None:
                out["eliminated_by"] = emptied.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class Claim:
    """The allocation to write for one instance (the placement consumer).

    ``generation`` None: the consumer must not hold allocations yet (a new instance);
    otherwise the consumer generation last read (a move that keeps what it holds).
    """

    consumer: str
    allocation_request: AllocationRequest
    project_id: str
    user_id: str
    consumer_type: str = INSTANCE_CONSUMER_TYPE
    generation: int | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """What a consumer holds in placement now, and the generation to write it under."""

    allocations: Mapping[str, Mapping[str, int]]
    generation: int
    project_id: str
    user_id: str

    def doubled_up(self, destination: AllocationRequest) -> AllocationRequest:
        """Nova's move-operation claim (``_move_operation_alloc_request``): everything the
        consumer holds stays, and the destination's allocations are added on providers it
        holds nothing on (a sharing provider both hosts use keeps the source's amounts)."""
        merged = {rp: dict(resources) for rp, resources in self.allocations.items()}
        for rp, resources in destination.allocations.items():
            if rp not in self.allocations:
                merged[rp] = dict(resources)
        return AllocationRequest(merged, destination.mappings)


class ClaimConflict(AllotmentError):
    """Placement refused a claim; nothing of that call was written. ``kind`` is
    ``capacity`` (a provider no longer has room, or changed meanwhile) or ``consumer``
    (the instance already holds allocations)."""

    def __init__(self, message: str, kind: Literal["capacity", "consumer"]) -> None:
        super().__init__(message)
        self.kind = kind


class PlacementRejected(AllotmentError):
    """Placement refused the candidate query itself (an unknown trait or resource class,
    say): no host can match it."""


class PlacementClient(Protocol):
    """The scheduler's whole use of placement."""

    # Shown in logs and explanations: "in-process" or the remote URL.
    where: str
    # True when candidates reflect this client's claims as soon as they are committed (the
    # embedded placement's index): the manager then decides and claims one request at a
    # time, so a process's concurrent requests never race each other for the same hosts.
    sees_own_claims: bool

    def allocation_candidates(self, ctx: RequestContext, request: ResourceRequest) -> Offer:
        """Candidates for ``request`` (``request.limit`` of them at most); raises
        PlacementRejected, or ServiceUnavailable when placement cannot answer."""
        ...

    def explain(self, ctx: RequestContext, request: ResourceRequest) -> PlacementFunnel:
        """Which constraint of ``request`` removed how many hosts (after an empty offer)."""
        ...

    def claim(self, ctx: RequestContext, claims: Sequence[Claim]) -> None:
        """Write every claim or none (one placement transaction); raises ClaimConflict."""
        ...

    def release(self, ctx: RequestContext, consumers: Sequence[str]) -> None:
        """Remove every allocation of these consumers (those without any are skipped)."""
        ...

    def held(self, ctx: RequestContext, consumer: str) -> Held | None:
        """The consumer's allocations and generation; None when it holds none."""
        ...

    def root_providers(self, ctx: RequestContext) -> list[tuple[str, str]]:
        """(uuid, name) of every root provider: HostManager's discovery round."""
        ...

    def provider_aggregates(self, ctx: RequestContext, provider: str) -> set[str] | None:
        """The placement aggregates ``provider`` is in; None when placement does not know
        it (a Neutron segment's provider, for the routed-networks request filter)."""
        ...

    def update_members(
        self,
        ctx: RequestContext,
        aggregate_uuid: str,
        add: Collection[str],
        remove: Collection[str],
    ) -> None:
        """Make providers ``add`` members of a placement aggregate and ``remove`` not
        (the HostManager's aggregate mirror)."""
        ...
