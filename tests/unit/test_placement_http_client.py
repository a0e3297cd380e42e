"""The HTTP placement client against a scripted server: the query string it sends for a
ResourceRequest, how it reads candidates, and how it maps placement's answers (409s,
400s, 5xx, unreachable) to the scheduler's errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from allotment import errors, log
from allotment.client import HttpTransport
from allotment.client.placement_http import HttpPlacementClient, query_params
from allotment.context import RequestContext
from allotment.scheduler.placement import AllocationRequest, Claim, ClaimConflict, PlacementRejected
from allotment.scheduler.resource_request import ResourceRequest

CTX = RequestContext.internal()
ROOT, GPU0, GPU1, SHARED = (str(uuid.UUID(int=i)) for i in range(1, 5))


def client(handler: Callable[[httpx.Request], httpx.Response]) -> HttpPlacementClient:
    transport = HttpTransport(
        "http://placement.test",
        token="secret",
        microversion="1.39",
        retries=0,
        transport=httpx.MockTransport(handler),
    )
    return HttpPlacementClient(transport)


def error(status: int, detail: str, code: str = "placement.undefined_code") -> httpx.Response:
    body = {"errors": [{"status": status, "title": "x", "detail": detail, "code": code}]}
    return httpx.Response(status, json=body)


def test_resource_request_becomes_upstreams_query_string() -> None:
    request = ResourceRequest(limit=50, group_policy="isolate")
    base = request.unsuffixed
    base.resources = {"VCPU": 2, "MEMORY_MB": 4096}
    base.require_trait("HW_CPU_X86_AVX2")
    base.required_traits.append(frozenset({"CUSTOM_A", "CUSTOM_B"}))
    base.forbidden_traits.add("CUSTOM_SLOW")
    request.require_aggregates({"agg-2", "agg-1"})
    request.require_aggregates({"agg-3"})
    base.forbidden_aggregates.add("agg-9")
    for suffix in ("1", "2"):
        group = request.group(suffix)
        group.resources = {"VGPU": 1}
        group.in_tree = ROOT
    request.same_subtree.append(frozenset({"1", "2"}))
    request.root_required.add("COMPUTE_IMAGE_TYPE_RAW")
    request.root_forbidden.add("COMPUTE_STATUS_DISABLED")
    assert query_params(request) == [
        ("resources", "MEMORY_MB:4096,VCPU:2"),
        ("required", "HW_CPU_X86_AVX2,!CUSTOM_SLOW"),
        ("required", "in:CUSTOM_A,CUSTOM_B"),
        ("member_of", "in:agg-1,agg-2"),
        ("member_of", "in:agg-3"),
        ("member_of", "!in:agg-9"),
        ("resources1", "VGPU:1"),
        ("in_tree1", ROOT),
        ("resources2", "VGPU:1"),
        ("in_tree2", ROOT),
        ("group_policy", "isolate"),
        ("same_subtree", "1,2"),
        ("root_required", "COMPUTE_IMAGE_TYPE_RAW,!COMPUTE_STATUS_DISABLED"),
        ("limit", "50"),
    ]
    no_limit = ResourceRequest(limit=None)
    no_limit.unsuffixed.resources = {"VCPU": 1}
    assert query_params(no_limit) == [("resources", "VCPU:1")]


def test_candidates_are_grouped_by_the_root_of_their_providers() -> None:
    summaries = {
        ROOT: {
            "resources": {
                "VCPU": {"capacity": 16, "used": 4},
                "MEMORY_MB": {"capacity": 8192, "used": 1024},
            },
            "traits": [],
            "root_provider_uuid": ROOT,
            "parent_provider_uuid": None,
        },
        GPU0: {
            "resources": {"VGPU": {"capacity": 1, "used": 0}},
            "traits": [],
            "root_provider_uuid": ROOT,
            "parent_provider_uuid": ROOT,
        },
        GPU1: {
            "resources": {"VGPU": {"capacity": 1, "used": 0}},
            "traits": [],
            "root_provider_uuid": ROOT,
            "parent_provider_uuid": ROOT,
        },
        SHARED: {
            "resources": {"DISK_GB": {"capacity": 1000, "used": 0}},
            "traits": [],
            "root_provider_uuid": SHARED,
            "parent_provider_uuid": None,
        },
    }
    requests = [
        {
            "allocations": {
                ROOT: {"resources": {"VCPU": 1}},
                GPU0: {"resources": {"VGPU": 1}},
                SHARED: {"resources": {"DISK_GB": 10}},
            },
            "mappings": {"": [ROOT, SHARED], "1": [GPU0]},
        },
        {
            "allocations": {
                ROOT: {"resources": {"VCPU": 1}},
                GPU1: {"resources": {"VGPU": 1}},
                SHARED: {"resources": {"DISK_GB": 10}},
            },
            "mappings": {"": [ROOT, SHARED], "1": [GPU1]},
        },
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"allocation_requests": requests, "provider_summaries": summaries}
        )

    request = ResourceRequest(limit=10)
    request.unsuffixed.resources = {"VCPU": 1}
    offer = client(handler).allocation_candidates(CTX, request)
    assert seen[0].headers["openstack-api-version"] == "placement 1.39"
    assert seen[0].headers["x-auth-token"] == "secret"
    assert seen[0].url.params.multi_items() == [("resources", "VCPU:1"), ("limit", "10")]
    # The sharing provider's own "tree" is offered too: the cycle drops it (no host).
    assert list(offer.hosts.uuids) == [ROOT, SHARED]
    assert offer.hosts.free_vcpus[0] == 12 and offer.hosts.free_ram_mb[0] == 7168
    assert list(offer.requests_of(0)) == [0, 1]
    assert offer.allocation_request(1) == AllocationRequest.from_dict(requests[1])
    assert offer.allocation_request(1).to_dict() == requests[1]
    assert (offer.free(GPU1, "VGPU"), offer.free(ROOT, "VGPU")) == (1, 0)
    assert (offer.total_requests, offer.total_providers) == (2, 4)


def test_a_rejected_query_and_an_erroring_placement_are_told_apart() -> None:
    request = ResourceRequest()
    request.unsuffixed.resources = {"VCPU": 1}
    bad = client(lambda r: error(400, "Invalid query string parameters: No such trait(s): X"))
    with pytest.raises(PlacementRejected, match="No such trait"):
        bad.allocation_candidates(CTX, request)
    broken = client(lambda r: error(500, "boom"))
    with pytest.raises(errors.ServiceUnavailable, match="HTTP 500 boom"):
        broken.allocation_candidates(CTX, request)


def test_claims_are_one_post_for_the_batch() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/allocations")
        bodies.append(json.loads(request.content))
        return httpx.Response(204)

    alloc = AllocationRequest({ROOT: {"VCPU": 1}}, {"": (ROOT,)})
    claims = [Claim(str(uuid.UUID(int=10 + i)), alloc, "p", "u") for i in range(2)]
    client(handler).claim(CTX, claims)
    assert bodies == [
        {
            claim.consumer: {
                "allocations": {ROOT: {"resources": {"VCPU": 1}}},
                "project_id": "p",
                "user_id": "u",
                "consumer_generation": None,
                "consumer_type": "INSTANCE",
            }
            for claim in claims
        }
    ]


@pytest.mark.parametrize(
    ("response", "outcome"),
    [
        (error(409, "Unable to allocate inventory: would exceed the capacity."), "capacity"),
        (
            error(
                409,
                "consumer generation conflict - expected 1 but got None",
                "placement.concurrent_update",
            ),
            "consumer",
        ),
        (error(400, "Allocation for resource provider 'x' that does not exist."), "capacity"),
        (error(403, "Policy does not allow"), errors.ServiceUnavailable),
        (error(500, "database exploded"), errors.ServiceUnavailable),
    ],
)
def test_claim_answers(response: httpx.Response, outcome: Any) -> None:
    alloc = AllocationRequest({ROOT: {"VCPU": 1}}, {"": (ROOT,)})
    claims = [Claim(str(uuid.uuid4()), alloc, "p", "u")]
    placement = client(lambda r: response)
    if isinstance(outcome, str):
        with pytest.raises(ClaimConflict) as caught:
            placement.claim(CTX, claims)
        assert caught.value.kind == outcome
        assert "There was a conflict" not in caught.value.message
    else:
        with pytest.raises(outcome):
            placement.claim(CTX, claims)


def test_what_a_consumer_holds_and_a_claim_under_its_generation() -> None:
    """A move: read the consumer's allocations and generation at 1.39, write the
    doubled-up claim under that generation."""
    sent: list[Any] = []
    consumer = str(uuid.uuid4())
    held_body = {
        "allocations": {ROOT: {"resources": {"VCPU": 2}, "generation": 4}},
        "consumer_generation": 3,
        "project_id": "p",
        "user_id": "u",
        "consumer_type": "INSTANCE",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["OpenStack-API-Version"] == "placement 1.39"
        if request.method == "GET":
            found = request.url.path == f"/allocations/{consumer}"
            return httpx.Response(200, json=held_body if found else {"allocations": {}})
        sent.append(json.loads(request.content))
        return httpx.Response(204)

    placement = client(handler)
    assert placement.held(CTX, str(uuid.uuid4())) is None
    held = placement.held(CTX, consumer)
    assert held is not None
    assert (held.allocations, held.generation, held.project_id) == ({ROOT: {"VCPU": 2}}, 3, "p")
    # A sharing provider both hosts use keeps the source's amount (Nova's doubling up).
    destination = AllocationRequest({GPU0: {"VCPU": 2}, ROOT: {"VCPU": 5}}, {"": (GPU0,)})
    merged = held.doubled_up(destination)
    assert merged.allocations == {ROOT: {"VCPU": 2}, GPU0: {"VCPU": 2}}
    placement.claim(CTX, [Claim(consumer, merged, "p", "u", generation=held.generation)])
    assert sent[0][consumer]["consumer_generation"] == 3
    assert sent[0][consumer]["allocations"] == {
        ROOT: {"resources": {"VCPU": 2}},
        GPU0: {"resources": {"VCPU": 2}},
    }


def test_unreachable_placement_is_service_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    request = ResourceRequest()
    request.unsuffixed.resources = {"VCPU": 1}
    with pytest.raises(errors.ServiceUnavailable, match=r"placement\.test") as caught:
        client(refuse).allocation_candidates(CTX, request)
    assert "secret" not in caught.value.message
    assert caught.value.code == "allotment.placement_unavailable"


def test_release_deletes_each_consumer_and_ignores_missing_ones() -> None:
    deleted: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        deleted.append(request.url.path)
        return httpx.Response(404 if len(deleted) == 2 else 204)

    client(handler).release(CTX, ["a", "b", "c"])
    assert deleted == ["/allocations/a", "/allocations/b", "/allocations/c"]


def test_explain_probes_provider_counts_until_nothing_is_left() -> None:
    probes: list[list[tuple[str, str]]] = []
    counts = {(): 10, ("resources",): 6, ("resources", "required"): 0}

    def handler(request: httpx.Request) -> httpx.Response:
        params = request.url.params.multi_items()
        probes.append(params)
        n = counts[tuple(k for k, _ in params)]
        providers = [{"uuid": str(uuid.uuid4())} for _ in range(n)]
        return httpx.Response(200, json={"resource_providers": providers})

    request = ResourceRequest()
    request.unsuffixed.resources = {"VCPU": 4}
    request.unsuffixed.require_trait("CUSTOM_X")
    request.require_aggregates({"agg"})
    funnel = client(handler).explain(CTX, request)
    assert funnel.considered == 10
    assert [(c.constraint, c.value, c.before, c.after) for c in funnel.constraints] == [
        ("resources", "VCPU:4", 10, 6),
        ("required_trait", "CUSTOM_X", 6, 0),
    ]
    assert probes[-1] == [("resources", "VCPU:4"), ("required", "CUSTOM_X")]
    assert "providers, not trees" in funnel.method


def test_aggregate_membership_is_changed_with_generations() -> None:
    calls: list[tuple[str, Any]] = []
    state = {"aggregates": ["other"], "generation": 3, "conflicts": 1}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            calls.append(("GET", None))
            body = {
                "aggregates": state["aggregates"],
                "resource_provider_generation": state["generation"],
            }
            return httpx.Response(200, json=body)
        body = json.loads(request.content)
        calls.append(("PUT", body))
        if state["conflicts"]:
            state["conflicts"] -= 1
            state["generation"] += 1
            return error(409, "generation conflict", "placement.concurrent_update")
        state["aggregates"] = body["aggregates"]
        return httpx.Response(200, json=body)

    client(handler).update_members(CTX, "agg", [ROOT], [])
    assert state["aggregates"] == ["other", "agg"]
    puts = [body for method, body in calls if method == "PUT"]
    assert [p["resource_provider_generation"] for p in puts] == [3, 4]


def test_the_global_request_id_is_passed_on_else_our_own() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-openstack-request-id"))
        return httpx.Response(200, json={"resource_providers": []})

    placement = client(handler)
    caller = f"req-{uuid.uuid4()}"
    with_global = RequestContext(request_id=f"req-{uuid.uuid4()}", global_request_id=caller)
    alone = RequestContext(request_id=f"req-{uuid.uuid4()}")
    with log.request_context(with_global):
        placement.root_providers(with_global)
    with log.request_context(alone):
        placement.root_providers(alone)
    assert seen == [caller, alone.request_id]


def test_a_provider_s_aggregates_and_an_unknown_provider() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == f"/resource_providers/{ROOT}/aggregates":
            return httpx.Response(
                200, json={"aggregates": ["agg-1", "agg-2"], "resource_provider_generation": 3}
            )
        if request.url.path == f"/resource_providers/{GPU0}/aggregates":
            return error(500, "boom")
        return error(404, "No resource provider with uuid", "placement.undefined_code")

    placement = client(handler)
    assert placement.provider_aggregates(CTX, ROOT) == {"agg-1", "agg-2"}
    assert placement.provider_aggregates(CTX, SHARED) is None
    with pytest.raises(errors.ServiceUnavailable, match="read the aggregates"):
        placement.provider_aggregates(CTX, GPU0)
