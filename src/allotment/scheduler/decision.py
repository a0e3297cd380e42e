"""One request's decision before it is claimed: where each instance goes (``Pick``), what
the request took from the capacity placement offered (``Ledger``), and the cycle both
came from (``Decision``); and the answer (``Selection``, ``Alternates``).
``SchedulerManager`` makes them; ``coalesce`` batches them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from allotment.context import RequestContext
from allotment.scheduler.cycle.driver import Cycle
from allotment.scheduler.cycle.ranking import HostChoice
from allotment.scheduler.placement import (
    ALLOCATION_REQUEST_VERSION,
    AllocationRequest,
    Held,
    Offer,
)
from allotment.scheduler.resource_request import ResourceRequest

# Funnel stages of hosts taken out while placing a request's instances (or a batch's).
STAGE_CAPACITY = "placement_capacity"
STAGE_CLAIM = "claim_conflict"


@dataclass(frozen=True, slots=True)
class Selection:
    """One destination (chosen or alternate) as ``select_destinations`` returns it."""

    host: str
    nodename: str
    compute_node_uuid: str
    # None: nothing to claim (a rebuild check answers the host the instance is on).
    allocation_request: AllocationRequest | None
    allocation_request_version: str | None = ALLOCATION_REQUEST_VERSION
    limits: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        request = self.allocation_request
        return {
            "host": self.host,
            "nodename": self.nodename,
            "compute_node_uuid": self.compute_node_uuid,
            "allocation_request": None if request is None else request.to_dict(),
            "allocation_request_version": self.allocation_request_version,
            "limits": self.limits,
        }


@dataclass(frozen=True, slots=True)
class Pick:
    instance_uuid: str
    choice: HostChoice
    request: int  # index of the allocation request in the offer


class Ledger:
    """What this request has taken from the capacity placement reported, so a host is
    offered to the next instance only while one of its allocation requests still fits.
    ``base`` is what requests decided before this one in the same batch took (read only:
    their picks are not yet claimed when this one is decided)."""

    def __init__(self, offer: Offer, base: Mapping[tuple[str, str], int] | None = None) -> None:
        self.offer = offer
        self.taken: dict[tuple[str, str], int] = {}
        self.base: Mapping[tuple[str, str], int] = base if base is not None else {}
        self._requests: dict[int, AllocationRequest] = {}

    def request(self, index: int) -> AllocationRequest:
        found = self._requests.get(index)
        if found is None:
            found = self._requests[index] = self.offer.allocation_request(index)
        return found

    def fitting(self, host: int) -> int | None:
        """The first of the host's allocation requests that still fits, if any."""
        free, taken, base = self.offer.free, self.taken, self.base
        for index in self.offer.requests_of(host):
            allocations = self.request(index).allocations
            if all(
                free(rp, rc) - base.get((rp, rc), 0) - taken.get((rp, rc), 0) >= amount
                for rp, resources in allocations.items()
                for rc, amount in resources.items()
            ):
                return index
        return None

    def short_of(self, host: int) -> str:
        """The resource class the room ran out of on the host (earlier instances of this
        request, or of the batch, took it): the first its first allocation request no
        longer finds."""
        free, taken, base = self.offer.free, self.taken, self.base
        for index in self.offer.requests_of(host):
            for rp, resources in self.request(index).allocations.items():
                for rc, amount in resources.items():
                    if free(rp, rc) - base.get((rp, rc), 0) - taken.get((rp, rc), 0) < amount:
                        return rc
        return "capacity"

    def take(self, index: int) -> None:
        for rp, resources in self.request(index).allocations.items():
            for rc, amount in resources.items():
                self.taken[(rp, rc)] = self.taken.get((rp, rc), 0) + amount


# Where a request's allocation candidates come from (placement, or a batch's cache of it).
AskPlacement = Callable[[RequestContext, ResourceRequest], Offer]


@dataclass
class Decision:
    """One request's cycle and ledger, and where its instances went so far."""

    cycle: Cycle
    ledger: Ledger
    picks: list[Pick]
    # Instances that held allocations before their claim (a move), and what they held.
    moved: dict[str, Held] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alternates:
    """A cycle's best hosts for alternates (positions, best first), each with its
    selection, or None when none of its allocation requests fits any more. Ranked once,
    they serve every request decided on that cycle (a batch's cohort)."""

    ranked: list[tuple[int, Selection | None]]

    def excluding(self, chosen: Sequence[int], count: int) -> list[Selection]:
        """The alternates of a request whose instances went to ``chosen``: its first
        ``count`` other hosts, less those that no longer fit (Nova's, not refilled)."""
        taken = set(chosen)
        first = [selection for pos, selection in self.ranked if pos not in taken][:count]
        return [selection for selection in first if selection is not None]
