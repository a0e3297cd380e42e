"""The scheduler against the real OpenStack Placement 16 over HTTP.

Placement runs from a throw-away venv (``../shared/tools/run_real_placement.sh``: SQLite,
noauth2, gunicorn). When that venv does not exist yet, creating it needs network access,
so like every ``real_placement`` test they are left out of ``make test`` and run by
``make test-upstream`` (see tests/integration/conftest.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from allotment.client import HttpTransport
from allotment.client.placement_http import HttpPlacementClient
from allotment.context import RequestContext
from allotment.scheduler.placement import Claim, ClaimConflict
from allotment.scheduler.resource_request import ResourceRequest
from tests.conftest import LiveServer
from tests.fleet import Fleet, flavor, request_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.real_placement]
CTX = RequestContext.internal()


@pytest.fixture
def placement(real_placement_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=real_placement_url, timeout=60, trust_env=False) as client:
        yield client


@pytest.fixture
def scheduler(real_placement_url: str, tmp_path: Path) -> Iterator[httpx.Client]:
    """``allotment serve`` scheduling against the real Placement."""
    server = LiveServer(
        f"sqlite:///{tmp_path / 'scheduler.sqlite'}",
        tmp_path / "state",
        "--placement-url",
        real_placement_url,
        "--placement-token",
        "admin",
    )
    try:
        with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as client:
            yield client
    finally:
        server.stop()


def unique(name: str) -> str:
    """Host names are placement provider names: unique across the module's tests."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_client_candidates_claims_conflicts_and_explain(
    placement: httpx.Client, real_placement_url: str
) -> None:
    fleet = Fleet(placement)
    inventories = {"VCPU": {"total": 2}, "MEMORY_MB": {"total": 4096}}
    hosts = [
        fleet.provider(unique("cn"), inventories=inventories, traits=traits)
        for traits in ([], ["CUSTOM_FAST"])
    ]
    client = HttpPlacementClient(HttpTransport(real_placement_url, token="admin", retries=0))
    request = ResourceRequest(limit=10)
    request.unsuffixed.resources = {"VCPU": 2, "MEMORY_MB": 1024}
    request.unsuffixed.require_trait("CUSTOM_FAST")
    offer = client.allocation_candidates(CTX, request)
    assert list(offer.hosts.uuids) == [hosts[1]]
    chosen = offer.allocation_request(offer.requests_of(0)[0])
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    client.claim(CTX, [Claim(first, chosen, "p", "u")])
    with pytest.raises(ClaimConflict) as full:
        client.claim(CTX, [Claim(second, chosen, "p", "u")])
    assert full.value.kind == "capacity"
    with pytest.raises(ClaimConflict) as again:
        client.claim(CTX, [Claim(first, chosen, "p", "u")])
    assert again.value.kind == "consumer"
    assert client.allocation_candidates(CTX, request).total_requests == 0
    funnel = client.explain(CTX, request)
    assert funnel.constraints[-1].after == 0
    client.release(CTX, [first, second])
    assert client.allocation_candidates(CTX, request).total_requests == 1


def test_select_destinations_against_openstack_placement(
    placement: httpx.Client, scheduler: httpx.Client
) -> None:
    fleet = Fleet(scheduler, placement=placement)
    big, small = unique("big"), unique("small")
    fleet.host(big, vcpus=4, ram=32768)
    fleet.host(small, vcpus=2)
    zoned = unique("zoned")
    fleet.host(zoned, vcpus=8, ram=65536)
    fleet.aggregate("az9", [zoned], availability_zone="az9")  # mirrored into Placement
    instances = [str(uuid.uuid4()) for _ in range(3)]
    response = fleet.select(request_spec(), uuids=instances, alternates=True)
    assert response.status_code == 200, response.text
    for instance, chosen in zip(instances, response.json()["selections"], strict=True):
        assert chosen[0]["host"] in (big, small, zoned)
        assert list(fleet.allocations(instance)) == [chosen[0]["compute_node_uuid"]]
    assert set(fleet.place(request_spec(availability_zone="az9"), 2)) == {zoned}
    # All or nothing: 20 more instances of 4 vCPUs do not fit; nothing stays claimed.
    before = {name: fleet.usages(name)["VCPU"] for name in (big, small, zoned)}
    refused = fleet.select(request_spec(flavor=flavor(vcpus=4)), 20)
    assert refused.status_code == 409
    assert refused.json()["errors"][0]["code"] == "allotment.no_valid_host"
    assert {name: fleet.usages(name)["VCPU"] for name in (big, small, zoned)} == before
    explained = fleet.select(request_spec(flavor=flavor(vcpus=64)))
    stage = explained.json()["errors"][0]["explanation"]["stages"][-1]
    assert stage["stage"] == "placement" and stage["after"] == 0
    assert "GET /resource_providers" in stage["detail"]["method"]
    assert stage["detail"]["eliminated_by"]["value"] == "VCPU:64"
