"""The what-if: how many more instances of each flavor fit now, per availability zone and
in total (Nomad's ``job plan``; what StackHPC's os-capacity exports per flavor).

It runs the real decision path without claiming: the request filters and placement's
allocation candidates (traits, aggregates, allocation ratios, ``max_unit``; with no
candidate limit, so every host counts), then the host filters once (disabled and down
hosts, AZ, image properties, NUMA, ...). For every host that passes, the count is how
many of the flavor's allocation requests placement's free resources still hold, taking
each from what the previous ones left, the way a multi-instance request is consumed.
Filters that depend on what is already on a host (instance counts, affinity) are judged
as for the next instance, not re-run per added one.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from allotment import errors
from allotment.auth import policy
from allotment.context import RequestContext
from allotment.scheduler.decision import Ledger
from allotment.scheduler.manager import SchedulerManager
from allotment.scheduler.placement import Offer, PlacementRejected
from allotment.scheduler.request import Flavor, Image, RequestSpec

# Instances counted per host at most (a flavor of zero resources fits without end).
MAX_PER_HOST = 100000


class CapacityRequest(BaseModel):
    """Body of ``POST /scheduler/v1/capacity``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flavors: list[Flavor] = Field(min_length=1, max_length=100)
    # Count only this zone's hosts (as a boot into it would).
    availability_zone: str | None = None
    # The project asking (tenant-isolated aggregates); default: the caller's.
    project_id: str | None = None
    # Image properties the hosts must accept (ImagePropertiesFilter, image traits).
    image: Image | None = None
    # List every host that fits one or more, with its count.
    hosts: bool = False


@dataclass
class FlavorCapacity:
    flavor: str
    total: int = 0
    zones: dict[str, int] = field(default_factory=dict)
    hosts: list[dict[str, Any]] = field(default_factory=list)
    # Why nothing fits, when nothing does (the explanation's one-line summary).
    reason: str | None = None

    def to_dict(self, with_hosts: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "flavor": self.flavor,
            "total": self.total,
            "availability_zones": dict(sorted(self.zones.items())),
        }
        if self.reason is not None:
            out["reason"] = self.reason
        if with_hosts:
            out["hosts"] = self.hosts
        return out


def _fits(offer: Offer, candidate: int) -> int:
    """How many of the host's allocation requests its free resources hold, one after
    another (each taken from what the previous ones left)."""
    requests = offer.requests_of(candidate)
    if not requests:
        return 0
    ledger = Ledger(offer)
    if len(requests) == 1:  # the common flat host: a closed form
        allocations = ledger.request(requests[0]).allocations
        amounts = [
            offer.free(rp, rc) // amount
            for rp, resources in allocations.items()
            for rc, amount in resources.items()
            if amount > 0
        ]
        return max(0, min(amounts)) if amounts else MAX_PER_HOST
    count = 0
    while count < MAX_PER_HOST:
        index = ledger.fitting(candidate)
        if index is None:
            break
        if not any(
            n
            for resources in ledger.request(index).allocations.values()
            for n in resources.values()
        ):
            return MAX_PER_HOST
        ledger.take(index)
        count += 1
    return count


def capacity(
    manager: SchedulerManager,
    ctx: RequestContext,
    flavors: Sequence[Flavor],
    *,
    availability_zone: str | None = None,
    project_id: str | None = None,
    image: Image | None = None,
) -> list[FlavorCapacity]:
    """Per flavor: how many more fit, per availability zone and in total, with the hosts."""
    policy.authorize(ctx, "scheduler:capacity")
    settings = manager.settings
    default_zone = settings.scheduler.default_availability_zone
    snapshot = manager.host_manager.snapshot()
    results = []
    for flavor in flavors:
        result = FlavorCapacity(flavor.name)
        results.append(result)
        spec = RequestSpec(
            project_id=project_id or ctx.project_id or "capacity",
            flavor=flavor,
            image=image,
            availability_zone=availability_zone,
        )
        try:
            prepared = manager.pipeline.prepare(ctx, spec, snapshot)
            prepared.resources.limit = None
            try:
                offer = manager.placement.allocation_candidates(ctx, prepared.resources)
            except PlacementRejected as exc:
                result.reason = f"placement rejected the request: {exc.message}"
                continue
            if not offer.total_requests:
                result.reason = "placement returned no candidates"
                continue
            probe = str(uuidlib.uuid4())
            cycle = manager.pipeline.start(
                prepared, snapshot, offer.hosts, [probe], now=manager.clock()
            )
            ranking = cycle.next_hosts(probe)
        except errors.NoValidHost as exc:
            result.reason = exc.message
            continue
        for position in sorted(int(p) for p in ranking.positions):
            choice = cycle.choice(position, 0.0)
            fits = _fits(offer, choice.candidate)
            zones = snapshot.aggregate_values(cycle.aggregate_set(position), "availability_zone")
            zone = ",".join(sorted(zones)) if zones else default_zone
            result.zones[zone] = result.zones.get(zone, 0) + fits
            result.total += fits
            result.hosts.append(
                {
                    "host": choice.host,
                    "nodename": choice.nodename,
                    "availability_zone": zone,
                    "fits": fits,
                }
            )
        result.hosts.sort(key=lambda h: (-h["fits"], h["host"], h["nodename"]))
    return results
