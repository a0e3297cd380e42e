"""The scheduler's placement client when placement is embedded in the same process: plain
calls into ``PlacementService`` (no HTTP, no JSON).

Candidates come from the capacity index as arrays and stay arrays: the hosts, their free
resources and their allocation requests are read off the ``CandidateSet`` only for the
hosts a request actually considers. Claims are one ``set_allocations`` call for the whole
batch: one SQL transaction, capacity and consumer generations checked in it, one durable
commit. When placement finds nothing, the index counts which constraint removed how many
hosts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence

import numpy as np
import sqlalchemy as sa

from allotment import errors
from allotment.context import RequestContext
from allotment.placement.candidates import CandidateSet
from allotment.placement.model import CandidateRequest, ConsumerWrite, RequestGroup
from allotment.placement.service import PlacementService
from allotment.scheduler.placement import (
    AllocationRequest,
    Candidates,
    Claim,
    ClaimConflict,
    ConstraintCount,
    Held,
    Offer,
    PlacementFunnel,
    PlacementRejected,
)
from allotment.scheduler.resource_request import ResourceRequest

# Generation conflicts tolerated while mirroring one provider's aggregates.
_MEMBERSHIP_RETRIES = 5


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    """The database going away is placement being unavailable (503), not a bug (500)."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise errors.ServiceUnavailable(
            f"placement's database is unavailable: {type(exc.orig).__name__}"
        ) from None


def candidate_request(request: ResourceRequest) -> CandidateRequest:
    """The scheduler's query in placement's terms (what ``GET /allocation_candidates``
    would parse from the equivalent query string)."""
    groups = tuple(
        RequestGroup(
            suffix=group.suffix,
            resources=dict(group.resources),
            required_traits=tuple(group.required_traits),
            forbidden_traits=frozenset(group.forbidden_traits),
            member_of=tuple(group.member_of),
            forbidden_aggregates=frozenset(group.forbidden_aggregates),
            in_tree=group.in_tree,
        )
        for group in request.groups.values()
    )
    return CandidateRequest(
        groups=groups,
        limit=request.limit,
        group_policy=request.group_policy if request.suffixed_count() >= 2 else None,
        root_required=frozenset(request.root_required),
        root_forbidden=frozenset(request.root_forbidden),
        same_subtrees=tuple(request.same_subtree),
    )


class SetOffer(Offer):
    """An offer over a ``CandidateSet``: hosts are the roots of the providers each
    allocation request takes resources from."""

    def __init__(self, found: CandidateSet) -> None:
        self.found = found
        n_providers = len(found.uuids)
        self.total_requests = len(found)
        self.total_providers = len(found.summary)
        root_of = np.full(n_providers, -1, np.int64)
        root_of[found.summary] = found.summary_root
        resourceful = [i for i, slot in enumerate(found.slots) if slot.resources]
        count = len(found)
        if not resourceful or not count:
            self._no_hosts()
            return
        roots = root_of[found.picks[resourceful]]  # (slots, candidates)
        # Distinct (root, candidate) pairs as one sortable key, candidates in placement's
        # order within each root.
        keys = (roots * count + np.arange(count, dtype=np.int64)).ravel()
        keys = keys[roots.ravel() >= 0]
        keys = np.unique(keys) if len(resourceful) > 1 else np.sort(keys)
        pair_root, self._pair_candidate = np.divmod(keys, count)
        starts = np.flatnonzero(np.diff(pair_root, prepend=-1))
        host_roots = pair_root[starts]
        # Hosts in the order placement offered them (its round-robin over trees).
        order = np.argsort(self._pair_candidate[starts], kind="stable")
        host_roots = host_roots[order]
        self._starts = starts[order]
        self._ends = np.append(starts[1:], len(keys))[order]
        host_of_root = np.full(n_providers, -1, np.int64)
        host_of_root[host_roots] = np.arange(len(host_roots))
        # Free VCPU / MEMORY_MB / DISK_GB of each host's tree, for the weighers.
        summary_host = host_of_root[found.summary_root]
        in_host = summary_host >= 0
        free = {}
        for name in ("VCPU", "MEMORY_MB", "DISK_GB"):
            total = np.zeros(len(host_roots), np.float64)
            if name in found.class_names:
                c = found.class_names.index(name)
                left = np.where(found.has_inventory[c], found.capacity[c] - found.used[c], 0)
                total = np.bincount(
                    summary_host[in_host], weights=left[in_host], minlength=len(host_roots)
                ).astype(np.float64)
            free[name] = total
        self.hosts = Candidates(
            uuids=found.uuids[host_roots].tolist(),
            free_ram_mb=free["MEMORY_MB"],
            free_disk_mb=free["DISK_GB"] * 1024,
            free_vcpus=free["VCPU"],
        )
        self._summary_of: dict[str, int] | None = None

    def _no_hosts(self) -> None:
        empty = np.zeros(0, np.float64)
        self.hosts = Candidates([], empty, empty, empty)
        self._pair_candidate = self._starts = self._ends = np.zeros(0, np.int64)
        self._summary_of = None

    def requests_of(self, host: int) -> Sequence[int]:
        found: list[int] = self._pair_candidate[self._starts[host] : self._ends[host]].tolist()
        return found

    def allocation_request(self, index: int) -> AllocationRequest:
        found = self.found
        mappings = {suffix: tuple(rps) for suffix, rps in found.mappings(index).items()}
        return AllocationRequest(found.allocations(index), mappings)

    def free(self, provider: str, resource_class: str) -> int:
        found = self.found
        if self._summary_of is None:
            summarized = found.uuids[found.summary].tolist()
            self._summary_of = dict(zip(summarized, range(len(summarized)), strict=True))
        i = self._summary_of.get(provider)
        if i is None or resource_class not in found.class_names:
            return 0
        c = found.class_names.index(resource_class)
        if not found.has_inventory[c, i]:
            return 0
        return int(found.capacity[c, i] - found.used[c, i])


class LocalPlacementClient:
    """``PlacementClient`` over this process's ``PlacementService``."""

    where = "in-process"
    sees_own_claims = True

    def __init__(self, service: PlacementService) -> None:
        self.service = service

    def allocation_candidates(self, ctx: RequestContext, request: ResourceRequest) -> Offer:
        with _database_errors():
            try:
                found = self.service.allocation_candidates(candidate_request(request))
            except errors.InvalidInput as exc:  # an unknown trait or resource class
                raise PlacementRejected(exc.message) from None
        return SetOffer(found)

    def explain(self, ctx: RequestContext, request: ResourceRequest) -> PlacementFunnel:
        with _database_errors():
            considered, steps = self.service.explain_candidates(candidate_request(request))
        return PlacementFunnel(
            considered,
            [
                ConstraintCount(s.constraint, s.value, s.before, s.after, s.group, s.only_blocker)
                for s in steps
            ],
            method=(
                "capacity index: hosts (provider trees) left after each constraint, in "
                "order; only_blocker counts the hosts that constraint alone keeps out "
                "(sharing providers are not counted)"
            ),
        )

    def claim(self, ctx: RequestContext, claims: Sequence[Claim]) -> None:
        if not claims:
            return
        writes = {
            claim.consumer: ConsumerWrite(
                allocations=claim.allocation_request.allocations,
                project_id=claim.project_id,
                user_id=claim.user_id,
                generation=claim.generation,
                consumer_type=claim.consumer_type,
            )
            for claim in claims
        }
        with _database_errors():
            try:
                self.service.set_allocations(writes)
            except errors.GenerationConflict as exc:
                raise ClaimConflict(exc.message, "consumer") from None
            except (errors.Conflict, errors.InvalidInput) as exc:
                # Over capacity, a provider or class gone since the query, a lost race.
                raise ClaimConflict(exc.message, "capacity") from None

    def release(self, ctx: RequestContext, consumers: Sequence[str]) -> None:
        with _database_errors():
            self.service.delete_allocations_of(consumers)

    def held(self, ctx: RequestContext, consumer: str) -> Held | None:
        with _database_errors():
            found = self.service.get_consumer_allocations(consumer)
        if not found:
            return None
        allocations: dict[str, dict[str, int]] = {}
        for allocation in found:
            allocations.setdefault(allocation.provider_uuid, {})[allocation.resource_class] = (
                allocation.used
            )
        owner = found[0].consumer
        return Held(allocations, owner.generation, owner.project_id, owner.user_id)

    def root_providers(self, ctx: RequestContext) -> list[tuple[str, str]]:
        with _database_errors():
            return [(p.uuid, p.name) for p in self.service.list_providers() if p.parent_id is None]

    def provider_aggregates(self, ctx: RequestContext, provider: str) -> set[str] | None:
        with _database_errors():
            try:
                return set(self.service.get_provider_aggregates(provider)[1])
            except errors.NotFound:
                return None

    def update_members(
        self,
        ctx: RequestContext,
        aggregate_uuid: str,
        add: Collection[str],
        remove: Collection[str],
    ) -> None:
        with _database_errors():
            members = self.service.aggregate_members(aggregate_uuid)
            for provider in add:
                if provider not in members:
                    self._change_membership(provider, aggregate_uuid, True)
            for provider in remove:
                if provider in members:
                    self._change_membership(provider, aggregate_uuid, False)

    def _change_membership(self, provider: str, aggregate: str, member: bool) -> None:
        for _ in range(_MEMBERSHIP_RETRIES):
            try:
                current, have = self.service.get_provider_aggregates(provider)
            except errors.NotFound:
                return
            if (aggregate in have) == member:
                return
            wanted = [*have, aggregate] if member else [a for a in have if a != aggregate]
            try:
                self.service.set_provider_aggregates(
                    provider, wanted, generation=current.generation
                )
                return
            except errors.ConcurrentUpdate:
                continue
            except errors.NotFound:
                return
        raise errors.ConcurrentUpdate(
            f"the aggregates of provider {provider} kept changing; aggregate {aggregate} "
            "membership not updated (the periodic resync will retry)"
        )
