"""Inventories over HTTP: the collection and single-class endpoints, generations, in-use rules."""

from __future__ import annotations

from typing import Any

from tests.conftest import PlacementClient

VCPU = {
    "total": 64,
    "reserved": 0,
    "min_unit": 1,
    "max_unit": 64,
    "step_size": 1,
    "allocation_ratio": 4.0,
}


def _inventories(client: PlacementClient, rp: dict[str, Any]) -> Any:
    return client.get(f"/resource_providers/{rp['uuid']}/inventories").json()


def test_put_all_replaces_and_bumps_generation(client: PlacementClient) -> None:
    rp = client.create_provider("cn1")
    path = f"/resource_providers/{rp['uuid']}/inventories"
    body = {
        "resource_provider_generation": 0,
        "inventories": {"VCPU": VCPU, "DISK_GB": {"total": 100}},
    }
    resp = client.put(path, body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["resource_provider_generation"] == 1
    assert out["inventories"]["VCPU"] == VCPU
    # defaults are filled in for omitted fields
    assert out["inventories"]["DISK_GB"] == {
        "total": 100,
        "reserved": 0,
        "min_unit": 1,
        "max_unit": 2147483647,
        "step_size": 1,
        "allocation_ratio": 1.0,
    }
    resp = client.put(path, {"resource_provider_generation": 1, "inventories": {"VCPU": VCPU}})
    assert resp.status_code == 200
    assert set(resp.json()["inventories"]) == {"VCPU"}
    assert client.get(f"/resource_providers/{rp['uuid']}").json()["generation"] == 2


def test_stale_generation_is_409_and_changes_nothing(client: PlacementClient) -> None:
    rp = client.create_provider("cn1")
    path = f"/resource_providers/{rp['uuid']}/inventories"
    client.put(path, {"resource_provider_generation": 0, "inventories": {"VCPU": VCPU}})
    resp = client.put(path, {"resource_provider_generation": 0, "inventories": {}})
    assert resp.status_code == 409
    assert resp.json()["errors"][0]["code"] == "placement.concurrent_update"
    assert set(_inventories(client, rp)["inventories"]) == {"VCPU"}


def test_unknown_class_and_bad_capacity_are_400(client: PlacementClient) -> None:
    rp = client.create_provider("cn1")
    path = f"/resource_providers/{rp['uuid']}/inventories"
    resp = client.put(
        path, {"resource_provider_generation": 0, "inventories": {"NOPE": {"total": 1}}}
    )
    assert resp.status_code == 400
    assert "No such resource class NOPE" in resp.text
    resp = client.put(
        path,
        {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4, "reserved": 5}}},
    )
    assert resp.status_code == 400
    assert "The reserved value is greater than total" in resp.text
    assert _inventories(client, rp) == {"resource_provider_generation": 0, "inventories": {}}


def test_reserved_equal_to_total_needs_1_26(client: PlacementClient) -> None:
    rp = client.create_provider("cn1")
    path = f"/resource_providers/{rp['uuid']}/inventories"
    body = {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4, "reserved": 4}}}
    assert client.put(path, body, microversion="1.25").status_code == 400
    assert client.put(path, body, microversion="1.26").status_code == 200


def test_single_class_lifecycle(client: PlacementClient) -> None:
    rp = client.create_provider("cn1")
    path = f"/resource_providers/{rp['uuid']}/inventories"
    resp = client.post(path, {"resource_class": "DISK_GB", "total": 10})
    assert resp.status_code == 201
    assert resp.headers["location"].endswith(f"{path}/DISK_GB")
    assert client.post(path, {"resource_class": "DISK_GB", "total": 10}).status_code == 409
    resp = client.put(f"{path}/DISK_GB", {"resource_provider_generation": 1, "total": 20})
    assert resp.status_code == 200 and resp.json()["total"] == 20
    resp = client.put(f"{path}/VCPU", {"resource_provider_generation": 2, "total": 20})
    assert resp.status_code == 400
    assert client.delete(f"{path}/DISK_GB").status_code == 204
    assert client.get(f"{path}/DISK_GB").status_code == 404
    assert client.delete(f"{path}/DISK_GB").status_code == 404


def test_delete_all_needs_1_5(client: PlacementClient) -> None:
    rp = client.create_provider("cn1")
    path = f"/resource_providers/{rp['uuid']}/inventories"
    client.put(path, {"resource_provider_generation": 0, "inventories": {"VCPU": VCPU}})
    assert client.delete(path, microversion="1.4").status_code == 405
    assert client.delete(path, microversion="1.5").status_code == 204
    assert _inventories(client, rp)["inventories"] == {}


def test_inventories_of_missing_provider_is_404(client: PlacementClient) -> None:
    resp = client.get("/resource_providers/0c3b7e4e-2e60-4b53-9b88-0a8b1ed1d0b1/inventories")
    assert resp.status_code == 404


def test_a_missing_provider_is_reported_before_a_bad_body(client: PlacementClient) -> None:
    path = "/resource_providers/0c3b7e4e-2e60-4b53-9b88-0a8b1ed1d0b1/inventories"
    bad_bodies: list[object] = [
        {"bogus": 1},
        {"resource_provider_generation": 0, "inventories": {"NOT_A_CLASS": {"total": 1}}},
        {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 1, "reserved": 2}}},
        {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4}}},
    ]
    for body in bad_bodies:
        resp = client.put(path, body)
        assert resp.status_code == 404, (body, resp.text)
        assert resp.json()["errors"][0]["code"] == "placement.undefined_code"
