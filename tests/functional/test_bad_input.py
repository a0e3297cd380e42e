"""Every bad input is a 4xx that names what was wrong, never a 5xx or a hang, and writes
nothing: the causes found by fuzzing (issue 12), one test each, plus strict number parsing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from allotment.app import build_services, create_app
from tests.conftest import PlacementClient, make_settings
from tests.fleet import Fleet, flavor, request_spec

BIG = 2**63


def _raw(client: PlacementClient, method: str, path: str, body: bytes) -> Any:
    headers = client.headers(**{"content-type": "application/json"})
    return client.client.request(method, path, content=body, headers=headers)


def _is_400(response: Any, *words: str) -> None:
    assert response.status_code == 400, response.text
    detail = response.json()["errors"][0]["detail"]
    for word in words:
        assert word in detail, detail


def _providers(client: PlacementClient) -> list[dict[str, Any]]:
    return list(client.get("/resource_providers").json()["resource_providers"])


# 1. Nesting deeper than the parser's bound.
@pytest.mark.parametrize("path", ["/resource_providers", "/scheduler/v1/select_destinations"])
def test_deeply_nested_body_is_400(client: PlacementClient, path: str) -> None:
    response = _raw(client, "POST", path, b"[" * 5000 + b"]" * 5000)
    _is_400(_raw(client, "POST", path, b"[" * 900 + b"]" * 900), "nested deeper than 64")
    _is_400(response, "Malformed JSON", "nest")


# 2. A lone surrogate in a string.
def test_lone_surrogate_in_a_name_is_400(client: PlacementClient) -> None:
    response = _raw(client, "POST", "/resource_providers", b'{"name": "\\ud800x"}')
    _is_400(response, "Malformed JSON", "surrogate")
    rp = client.create_provider()
    response = _raw(client, "PUT", f"/resource_providers/{rp['uuid']}", b'{"name": "\\udfffx"}')
    _is_400(response, "surrogate")
    assert [p["name"] for p in _providers(client)] == [rp["name"]]


# 3. Inventory keys that are not resource classes.
def test_inventory_key_that_is_not_a_resource_class_is_400(client: PlacementClient) -> None:
    rp = client.create_provider()
    body = {"resource_provider_generation": 0, "inventories": {"x": 1, "VCPU": {"total": 1}}}
    response = client.put(f"/resource_providers/{rp['uuid']}/inventories", body)
    _is_400(response, "'x'")
    reshape = {
        "inventories": {rp["uuid"]: {"resource_provider_generation": 0, "inventories": {"x": 1}}},
        "allocations": {},
    }
    _is_400(client.post("/reshaper", reshape, headers={"x-roles": "service"}), "'x'")
    assert client.get(f"/resource_providers/{rp['uuid']}/inventories").json()["inventories"] == {}


# 4. Non-finite numbers.
@pytest.mark.parametrize("ratio", [b"NaN", b"-Infinity", b"Infinity", b"-1e999", b"1e999"])
def test_non_finite_allocation_ratio_is_400(client: PlacementClient, ratio: bytes) -> None:
    rp = client.create_provider()
    body = b'{"resource_provider_generation": 0, "total": 4, "allocation_ratio": %s}' % ratio
    response = _raw(client, "PUT", f"/resource_providers/{rp['uuid']}/inventories/VCPU", body)
    _is_400(response, "Malformed JSON")
    assert client.get(f"/resource_providers/{rp['uuid']}/inventories").json()["inventories"] == {}


# 5. Amounts in query strings beyond the database's integers; 1_000 and other digits.
@pytest.mark.parametrize("amount", [str(BIG), "9" * 30, str(2**31), "1_000", "١٢", "²", "+-1"])
@pytest.mark.parametrize("path", ["/allocation_candidates", "/resource_providers"])
def test_query_amounts_are_bounded_ascii_integers(
    client: PlacementClient, path: str, amount: str
) -> None:
    response = client.get(path, params={"resources": f"VCPU:{amount}"})
    _is_400(response, "VCPU")


def test_query_amount_at_the_bound_is_accepted(client: PlacementClient) -> None:
    response = client.get("/allocation_candidates", params={"resources": f"VCPU:{2**31 - 1}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("limit", ["1_0", "٣", "-1"])
def test_candidate_limit_is_an_ascii_integer(client: PlacementClient, limit: str) -> None:
    # The first limit is the one used; the schema checks only the last one.
    query = [("resources", "VCPU:1"), ("limit", limit), ("limit", "1")]
    response = client.get("/allocation_candidates", params=query)
    _is_400(response, "limit")


def test_a_limit_beyond_any_count_is_400_naming_the_cap(client: PlacementClient) -> None:
    response = client.get(
        "/allocation_candidates", params={"resources": "VCPU:1", "limit": "9" * 40}
    )
    _is_400(response, "cap of 10000")


@pytest.mark.parametrize(
    "field",
    ["total", "reserved", "max_unit", "min_unit", "step_size"],
)
def test_inventory_integers_are_bounded(client: PlacementClient, field: str) -> None:
    rp = client.create_provider()
    body = {"resource_provider_generation": 0, "total": 4, field: 2**31}
    response = client.put(f"/resource_providers/{rp['uuid']}/inventories/VCPU", body)
    _is_400(response, str(2**31))


@pytest.mark.parametrize("amount", [2**31, BIG, 2**64 - 1])
def test_allocation_amounts_are_bounded(client: PlacementClient, amount: int) -> None:
    rp = client.create_provider()
    body = {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 2**31 - 1}}}
    response = client.put(f"/resource_providers/{rp['uuid']}/inventories", body)
    assert response.status_code == 200, response.text
    consumer = str(uuid.uuid4())
    allocation = {
        "allocations": {rp["uuid"]: {"resources": {"VCPU": amount}}},
        "project_id": "p",
        "user_id": "u",
        "consumer_generation": None,
    }
    response = client.put(f"/allocations/{consumer}", allocation)
    assert response.status_code == 400, response.text
    assert client.get(f"/allocations/{consumer}").json()["allocations"] == {}


@pytest.mark.parametrize("generation", [BIG, 2**64 - 1, -(2**63) - 1])
def test_huge_generations_are_400_or_409(client: PlacementClient, generation: int) -> None:
    rp = client.create_provider()
    body = {"resource_provider_generation": generation, "total": 4}
    response = client.put(f"/resource_providers/{rp['uuid']}/inventories/VCPU", body)
    assert response.status_code in (400, 409), response.text


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    services = build_services(make_settings(tmp_path))
    with TestClient(create_app(services)) as test_client:
        fleet = Fleet(test_client)
        fleet.host("h1", vcpus=8)
        yield fleet
    services.db.dispose()


# 6. Flavor fields and resources:* extra specs beyond the database's integers.
@pytest.mark.parametrize(
    "flavor_fields",
    [
        {"vcpus": BIG},
        {"vcpus": 2**31},
        {"memory_mb": BIG},
        {"root_gb": 2**31},
        {"extra_specs": {"resources:VCPU": str(BIG)}},
        {"extra_specs": {"resources1:VCPU": "1_000", "group_policy": "none"}},
        {"extra_specs": {"resources:VCPU": "٣"}},
    ],
)
@pytest.mark.parametrize("route", ["select_destinations", "explain"])
def test_huge_flavor_numbers_are_400(
    fleet: Fleet, flavor_fields: dict[str, Any], route: str
) -> None:
    spec = request_spec(flavor={**flavor(), **flavor_fields})
    body = {"instance_uuids": [str(uuid.uuid4())], "request_spec": spec}
    response = fleet.call("POST", f"/scheduler/v1/{route}", body)
    assert response.status_code == 400, response.text


# 7. NUMA, CPU and PCI extra specs that would drive a loop or an allocation.
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "extra_specs",
    [
        {"hw:numa_nodes": str(BIG)},
        {"hw:numa_nodes": "100000"},
        {"hw:numa_nodes": "1_0"},
        {"hw:cpu_policy": "mixed", "hw:cpu_dedicated_mask": "0-9999999999"},
        {"hw:cpu_policy": "mixed", "hw:cpu_dedicated_mask": f"^{BIG}"},
        {"hw:numa_nodes": "1", "hw:numa_cpus.0": "0-99999999999", "hw:numa_mem.0": "1024"},
        {"hw:numa_nodes": "1", "hw:numa_cpus.0": "0", "hw:numa_mem.0": str(BIG)},
        {"pci_passthrough:alias": f"gpu:{BIG}"},
        {"pci_passthrough:alias": "gpu:1_0"},
    ],
)
def test_numa_cpu_and_pci_specs_are_bounded(fleet: Fleet, extra_specs: dict[str, str]) -> None:
    spec = request_spec(flavor=flavor(extra_specs=extra_specs))
    body = {"instance_uuids": [str(uuid.uuid4())], "request_spec": spec}
    response = fleet.call("POST", "/scheduler/v1/select_destinations", body)
    assert response.status_code == 400, response.text


@pytest.mark.timeout(30)
def test_pinned_flavor_with_huge_vcpus_is_400(fleet: Fleet) -> None:
    extra = {"hw:cpu_policy": "dedicated"}
    spec = request_spec(flavor=flavor(vcpus=2**31 - 1, extra_specs=extra))
    body = {"instance_uuids": [str(uuid.uuid4())], "request_spec": spec}
    response = fleet.call("POST", "/scheduler/v1/select_destinations", body)
    assert response.status_code == 400, response.text


def test_amounts_with_surrounding_whitespace_are_numbers(client: PlacementClient) -> None:
    """Upstream reads ``DISK_GB:10 `` as 10 (its own suite sends it); digits stay ASCII."""
    ok = client.get("/allocation_candidates", params={"resources": "DISK_GB:10 "})
    assert ok.status_code == 200, ok.text
    bad = client.get("/allocation_candidates", params={"resources": "DISK_GB:1_0"})
    assert bad.status_code == 400, bad.text
