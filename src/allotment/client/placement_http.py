"""The scheduler's placement client over HTTP: our own Placement or OpenStack's, at
microversion 1.39.

``ResourceRequest`` becomes upstream's query string (``resources$S``, ``required$S`` with
``!`` and ``in:``, ``member_of$S`` with ``in:``/``!in:``, ``in_tree$S``, ``group_policy``,
``same_subtree``, ``root_required``, ``limit``); claims are one ``POST /allocations`` for
the whole batch (all-or-nothing on the server); releases are ``DELETE /allocations/{c}``.
Connection failures, timeouts and 5xx answers become ``ServiceUnavailable`` (the
scheduler's 503 ``allotment.placement_unavailable``); the transport has already retried
what was safe to retry.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import httpx

from allotment import errors
from allotment.client.http import HttpTransport, error_code, error_detail
from allotment.context import RequestContext
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
from allotment.scheduler.resource_request import ResourceGroup, ResourceRequest

LOG = logging.getLogger(__name__)
MICROVERSION = "1.39"
# Generation conflicts tolerated while mirroring one provider's aggregates.
_MEMBERSHIP_RETRIES = 5

Params = list[tuple[str, str]]


def _message(response: httpx.Response) -> str:
    """The error detail without webob's boilerplate sentence in front."""
    detail = error_detail(response)
    return detail.partition("\n\n")[2].strip() if "\n\n" in detail else detail


def _group_params(group: ResourceGroup) -> Params:
    suffix = group.suffix
    params: Params = []
    if group.resources:
        amounts = ",".join(f"{rc}:{n}" for rc, n in sorted(group.resources.items()))
        params.append((f"resources{suffix}", amounts))
    params += _trait_params(f"required{suffix}", group)
    params += _aggregate_params(f"member_of{suffix}", group.member_of, group.forbidden_aggregates)
    if group.in_tree:
        params.append((f"in_tree{suffix}", group.in_tree))
    return params


def _trait_params(name: str, group: ResourceGroup) -> Params:
    """Single traits and forbidden ones in one parameter; each any-of set in its own."""
    simple = sorted(t for item in group.required_traits if len(item) == 1 for t in item)
    simple += [f"!{t}" for t in sorted(group.forbidden_traits)]
    params = [(name, ",".join(simple))] if simple else []
    for item in group.required_traits:
        if len(item) > 1:
            params.append((name, "in:" + ",".join(sorted(item))))
    return params


def _aggregate_params(
    name: str, member_of: Iterable[frozenset[str]], forbidden: Iterable[str]
) -> Params:
    params = [(name, "in:" + ",".join(sorted(item))) for item in member_of]
    forbidden = sorted(forbidden)
    if forbidden:
        params.append((name, "!in:" + ",".join(forbidden)))
    return params


def query_params(request: ResourceRequest) -> Params:
    """``GET /allocation_candidates`` parameters for ``request`` (microversion 1.39)."""
    params: Params = []
    for group in request.groups.values():
        params += _group_params(group)
    if request.group_policy and request.suffixed_count() >= 2:
        params.append(("group_policy", request.group_policy))
    for subtree in request.same_subtree:
        params.append(("same_subtree", ",".join(sorted(subtree))))
    roots = sorted(request.root_required) + [f"!{t}" for t in sorted(request.root_forbidden)]
    if roots:
        params.append(("root_required", ",".join(roots)))
    if request.limit is not None:
        params.append(("limit", str(request.limit)))
    return params


class JsonOffer(Offer):
    """An offer read from upstream's ``GET /allocation_candidates`` JSON."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        requests: list[Mapping[str, Any]] = body.get("allocation_requests", [])
        self._summaries: Mapping[str, Mapping[str, Any]] = body.get("provider_summaries", {})
        self._requests = requests
        by_root: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            for root in dict.fromkeys(self._root(rp) for rp in request["allocations"]):
                by_root.setdefault(root, []).append(index)
        trees = {
            uuid: summary
            for uuid, summary in self._summaries.items()
            if self._root(uuid) in by_root
        }
        self.hosts = Candidates.from_provider_summaries(trees)
        self._by_host = [by_root[uuid] for uuid in self.hosts.uuids]
        self.total_requests = len(requests)
        self.total_providers = len(self._summaries)

    def _root(self, provider: str) -> str:
        summary = self._summaries.get(provider)
        return str(summary.get("root_provider_uuid") or provider) if summary else provider

    def requests_of(self, host: int) -> Sequence[int]:
        return self._by_host[host]

    def allocation_request(self, index: int) -> AllocationRequest:
        return AllocationRequest.from_dict(self._requests[index])

    def free(self, provider: str, resource_class: str) -> int:
        usage = self._summaries.get(provider, {}).get("resources", {}).get(resource_class)
        if usage is None:
            return 0
        return int(usage["capacity"]) - int(usage["used"])


class HttpPlacementClient:
    """``PlacementClient`` against a Placement endpoint (see the module docstring)."""

    # Each request reads placement afresh; serializing them would only add round trips.
    sees_own_claims = False

    def __init__(self, transport: HttpTransport) -> None:
        self.transport = transport
        self.where = transport.base_url
        # Aggregate -> providers this process made or saw members: the HostManager's
        # periodic resync then costs no request for them.
        self._members: dict[str, set[str]] = {}

    def close(self) -> None:
        self.transport.close()

    def _get(self, path: str, params: Params | None = None) -> httpx.Response:
        return self.transport.request("GET", path, params=params, microversion=MICROVERSION)

    def _unavailable(self, what: str, response: httpx.Response) -> errors.ServiceUnavailable:
        return errors.ServiceUnavailable(
            f"placement at {self.where} failed to {what}: HTTP {response.status_code} "
            f"{_message(response)}"
        )

    # -- candidates -----------------------------------------------------------------------

    def allocation_candidates(self, ctx: RequestContext, request: ResourceRequest) -> Offer:
        response = self._get("/allocation_candidates", query_params(request))
        if response.status_code == 200:
            return JsonOffer(response.json())
        if response.status_code == 400:
            raise PlacementRejected(_message(response))
        raise self._unavailable("list allocation candidates", response)

    def _count(self, params: Params) -> int:
        response = self._get("/resource_providers", params)
        if response.status_code == 400:
            raise PlacementRejected(_message(response))
        if response.status_code != 200:
            raise self._unavailable("list resource providers", response)
        return len(response.json()["resource_providers"])

    def explain(self, ctx: RequestContext, request: ResourceRequest) -> PlacementFunnel:
        """Counts from ``GET /resource_providers`` with the constraints added one at a
        time: providers, not trees, and each group on its own."""
        total = self._count([])
        counts: list[ConstraintCount] = []
        roots = sorted(request.root_required) + [f"!{t}" for t in sorted(request.root_forbidden)]
        base: Params = [("required", ",".join(roots))] if roots else []
        before = total
        if roots:
            before = self._count(base)
            counts.append(ConstraintCount("root_traits", roots, total, before))
        for group in request.groups.values():
            left = before
            # Each probe is a request: stop at the constraint that leaves nothing.
            for constraint, value, params in _group_steps(group):
                if not left:
                    break
                after = self._count(base + params)
                counts.append(ConstraintCount(constraint, value, left, after, group.suffix))
                left = after
        return PlacementFunnel(
            total,
            counts,
            method=(
                "GET /resource_providers with each request group's constraints added one at "
                "a time until none is left: counts are providers, not trees, and leave out "
                "sharing providers and constraints between groups"
            ),
        )

    # -- claims ---------------------------------------------------------------------------

    def claim(self, ctx: RequestContext, claims: Sequence[Claim]) -> None:
        if not claims:
            return
        body = {
            claim.consumer: {
                "allocations": claim.allocation_request.to_dict()["allocations"],
                "project_id": claim.project_id,
                "user_id": claim.user_id,
                "consumer_generation": claim.generation,
                "consumer_type": claim.consumer_type,
            }
            for claim in claims
        }
        response = self.transport.request(
            "POST", "/allocations", json=body, microversion=MICROVERSION
        )
        if response.status_code == 204:
            return
        detail = _message(response)
        if response.status_code == 409:
            consumer = (
                error_code(response) == errors.CONCURRENT_UPDATE
                and "consumer generation conflict" in detail
            )
            raise ClaimConflict(detail, "consumer" if consumer else "capacity")
        if response.status_code == 400:  # a provider or class gone since the query
            raise ClaimConflict(detail, "capacity")
        raise self._unavailable("write allocations", response)

    def release(self, ctx: RequestContext, consumers: Sequence[str]) -> None:
        for consumer in consumers:
            response = self.transport.request(
                "DELETE",
                f"/allocations/{consumer}",
                microversion=MICROVERSION,
                shown_as="/allocations/{instance}",  # instance uuids only in debug logs
            )
            if response.status_code not in (204, 404):
                raise self._unavailable("delete an instance's allocations", response)

    def held(self, ctx: RequestContext, consumer: str) -> Held | None:
        response = self.transport.request(
            "GET",
            f"/allocations/{consumer}",
            microversion=MICROVERSION,
            shown_as="/allocations/{instance}",
        )
        if response.status_code != 200:
            raise self._unavailable("read an instance's allocations", response)
        body = response.json()
        if not body.get("allocations"):
            return None
        return Held(
            {
                rp: {rc: int(n) for rc, n in alloc["resources"].items()}
                for rp, alloc in body["allocations"].items()
            },
            int(body["consumer_generation"]),
            str(body.get("project_id", "")),
            str(body.get("user_id", "")),
        )

    # -- host manager support -------------------------------------------------------------

    def root_providers(self, ctx: RequestContext) -> list[tuple[str, str]]:
        response = self._get("/resource_providers")
        if response.status_code != 200:
            raise self._unavailable("list resource providers", response)
        return [
            (rp["uuid"], rp["name"])
            for rp in response.json()["resource_providers"]
            if rp.get("root_provider_uuid", rp["uuid"]) == rp["uuid"]
        ]

    def provider_aggregates(self, ctx: RequestContext, provider: str) -> set[str] | None:
        response = self._get(f"/resource_providers/{provider}/aggregates")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._unavailable(f"read the aggregates of {provider}", response)
        return set(response.json()["aggregates"])

    def update_members(
        self,
        ctx: RequestContext,
        aggregate_uuid: str,
        add: Collection[str],
        remove: Collection[str],
    ) -> None:
        known = self._members.setdefault(aggregate_uuid, set())
        for provider in add:
            if provider not in known and self._change_membership(provider, aggregate_uuid, True):
                known.add(provider)
        for provider in remove:
            self._change_membership(provider, aggregate_uuid, False)
            known.discard(provider)

    def _change_membership(self, provider: str, aggregate: str, member: bool) -> bool:
        """Make ``provider`` a member of ``aggregate`` or not; False when placement does
        not know the provider (yet)."""
        path = f"/resource_providers/{provider}/aggregates"
        for _ in range(_MEMBERSHIP_RETRIES):
            current = self._get(path)
            if current.status_code == 404:
                LOG.info(
                    "provider %s is not in placement: aggregate %s skipped", provider, aggregate
                )
                return False
            if current.status_code != 200:
                raise self._unavailable(f"read the aggregates of {provider}", current)
            data = current.json()
            have = list(data["aggregates"])
            if (aggregate in have) == member:
                return True
            wanted = [*have, aggregate] if member else [a for a in have if a != aggregate]
            body = {
                "aggregates": wanted,
                "resource_provider_generation": data["resource_provider_generation"],
            }
            response = self.transport.request("PUT", path, json=body, microversion=MICROVERSION)
            if response.status_code == 200:
                return True
            if response.status_code != 409:
                raise self._unavailable(f"set the aggregates of {provider}", response)
        raise errors.ConcurrentUpdate(
            f"the aggregates of provider {provider} kept changing; aggregate {aggregate} "
            "membership not updated (the periodic resync will retry)"
        )


def _group_steps(group: ResourceGroup) -> list[tuple[str, Any, Params]]:
    """Each constraint of a group as (kind, value, the ``GET /resource_providers`` filter
    with it and every constraint before it), in explanation order."""
    steps: list[tuple[str, Any, Params]] = []
    amounts: list[str] = []
    others: Params = []

    def step(kind: str, value: Any) -> None:
        resources: Params = [("resources", ",".join(amounts))] if amounts else []
        steps.append((kind, value, resources + others))

    for rc, amount in sorted(group.resources.items()):
        amounts.append(f"{rc}:{amount}")
        step("resources", f"{rc}:{amount}")
    for item in group.required_traits:
        names = sorted(item)
        others.append(("required", "in:" + ",".join(names) if len(names) > 1 else names[0]))
        step("required_trait", names if len(names) > 1 else names[0])
    for trait in sorted(group.forbidden_traits):
        others.append(("required", f"!{trait}"))
        step("forbidden_trait", trait)
    for item in group.member_of:
        others.append(("member_of", "in:" + ",".join(sorted(item))))
        step("member_of", sorted(item))
    if group.forbidden_aggregates:
        value = sorted(group.forbidden_aggregates)
        others.append(("member_of", "!in:" + ",".join(value)))
        step("forbidden_aggregates", value)
    if group.in_tree:
        others.append(("in_tree", group.in_tree))
        step("in_tree", group.in_tree)
    return steps
