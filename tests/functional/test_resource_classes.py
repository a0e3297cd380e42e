"""Resource classes over HTTP: listing, custom classes' lifecycle, standard ones read-only."""

from __future__ import annotations

import os_resource_classes
import pytest

from allotment.app import Services
from allotment.placement.store import changes
from tests.conftest import PlacementClient


def _names(client: PlacementClient) -> list[str]:
    resp = client.get("/resource_classes")
    assert resp.status_code == 200, resp.text
    return [rc["name"] for rc in resp.json()["resource_classes"]]


def _detail(resp: object) -> str:
    return str(resp.json()["errors"][0]["detail"])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/resource_classes"),
        ("POST", "/resource_classes"),
        ("GET", "/resource_classes/VCPU"),
        ("PUT", "/resource_classes/CUSTOM_A"),
        ("DELETE", "/resource_classes/CUSTOM_A"),
    ],
)
def test_hidden_before_1_2(client: PlacementClient, method: str, path: str) -> None:
    body = {"name": "CUSTOM_A"} if method in ("POST", "PUT") else None
    resp = client.request(method, path, body, microversion="1.1")
    assert resp.status_code == 404
    assert client.get("/resource_classes/CUSTOM_A").status_code == 404


def test_list_has_standard_classes_in_library_order(client: PlacementClient) -> None:
    names = _names(client)
    assert names == list(os_resource_classes.STANDARDS)
    body = client.get("/resource_classes/VCPU").json()
    assert body == {"name": "VCPU", "links": [{"rel": "self", "href": "/resource_classes/VCPU"}]}


def test_create_get_and_duplicate(client: PlacementClient) -> None:
    resp = client.post("/resource_classes", {"name": "CUSTOM_GPU"})
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"].endswith("/resource_classes/CUSTOM_GPU")
    assert not resp.content
    assert client.get("/resource_classes/CUSTOM_GPU").json()["name"] == "CUSTOM_GPU"
    assert _names(client)[-1] == "CUSTOM_GPU"

    resp = client.post("/resource_classes", {"name": "CUSTOM_GPU"})
    assert resp.status_code == 409
    assert "Conflicting resource class already exists: CUSTOM_GPU" in _detail(resp)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"name": "GPU"}, "does not match"),
        ({"name": "CUSTOM_gpu"}, "does not match"),
        ({"name": "CUSTOM_" + "X" * 249}, "Failed validating 'maxLength'"),
        ({"name": "CUSTOM_GPU", "extra": 1}, "Additional properties are not allowed"),
        ({}, "'name' is a required property"),
        ({"name": "CUSTOM_GPU\n"}, "does not match"),
    ],
)
def test_create_bad_names_are_400_and_write_nothing(
    client: PlacementClient, body: dict[str, object], expected: str
) -> None:
    before = _names(client)
    resp = client.post("/resource_classes", body)
    assert resp.status_code == 400
    assert "JSON does not validate" in _detail(resp)
    assert expected in _detail(resp)
    assert _names(client) == before


def test_create_needs_json(client: PlacementClient) -> None:
    resp = client.request(
        "POST", "/resource_classes", headers={"content-type": "text/plain"}, microversion="1.2"
    )
    assert resp.status_code == 415
    resp = client.client.post(
        "/resource_classes",
        content=b'{"name": }',
        headers=client.headers(**{"content-type": "application/json"}),
    )
    assert resp.status_code == 400
    assert "Malformed JSON" in _detail(resp)


def test_rename_up_to_1_6(client: PlacementClient) -> None:
    client.post("/resource_classes", {"name": "CUSTOM_OLD"})
    client.post("/resource_classes", {"name": "CUSTOM_TAKEN"})
    path = "/resource_classes/CUSTOM_OLD"

    resp = client.put(path, {"name": "CUSTOM_TAKEN"}, microversion="1.6")
    assert resp.status_code == 409
    assert "Resource class already exists: CUSTOM_TAKEN" in _detail(resp)
    resp = client.put(path, {"name": "VCPU"}, microversion="1.6")
    assert resp.status_code == 400
    resp = client.put("/resource_classes/CUSTOM_NONE", {"name": "CUSTOM_X"}, microversion="1.6")
    assert resp.status_code == 404
    assert "No such resource class CUSTOM_NONE." in _detail(resp)
    resp = client.put("/resource_classes/VCPU", {"name": "CUSTOM_X"}, microversion="1.6")
    assert resp.status_code == 400
    assert "Cannot update standard resource class VCPU" in _detail(resp)
    resp = client.put(path, None, microversion="1.6", headers={"content-type": "application/json"})
    assert resp.status_code == 400

    resp = client.put(path, {"name": "CUSTOM_NEW"}, microversion="1.6")
    assert resp.status_code == 200
    assert resp.json() == {
        "name": "CUSTOM_NEW",
        "links": [{"rel": "self", "href": "/resource_classes/CUSTOM_NEW"}],
    }
    assert client.get(path).status_code == 404
    assert "CUSTOM_NEW" in _names(client) and "CUSTOM_OLD" not in _names(client)


def test_rename_carries_inventory_along(client: PlacementClient) -> None:
    client.post("/resource_classes", {"name": "CUSTOM_OLD"})
    rp = client.create_provider()
    inventories = f"/resource_providers/{rp['uuid']}/inventories"
    body = {"resource_provider_generation": 0, "inventories": {"CUSTOM_OLD": {"total": 3}}}
    assert client.put(inventories, body).status_code == 200
    resp = client.put("/resource_classes/CUSTOM_OLD", {"name": "CUSTOM_NEW"}, microversion="1.6")
    assert resp.status_code == 200
    assert set(client.get(inventories).json()["inventories"]) == {"CUSTOM_NEW"}
    body = {"resource_provider_generation": 1, "inventories": {"CUSTOM_OLD": {"total": 3}}}
    resp = client.put(inventories, body)
    assert resp.status_code == 400
    assert "No such resource class CUSTOM_OLD" in _detail(resp)


def test_put_creates_or_confirms_from_1_7(client: PlacementClient) -> None:
    resp = client.put("/resource_classes/CUSTOM_COW", microversion="1.7")
    assert resp.status_code == 201
    assert resp.headers["location"].endswith("/resource_classes/CUSTOM_COW")
    resp = client.put("/resource_classes/CUSTOM_COW", microversion="1.7")
    assert resp.status_code == 204
    assert resp.headers["location"].endswith("/resource_classes/CUSTOM_COW")
    for name in ("VCPU", "COW", "CUSTOM_" + "S" * 249):
        resp = client.put(f"/resource_classes/{name}", microversion="1.7")
        assert resp.status_code == 400, name
        assert "Failed validating" in _detail(resp)
    assert _names(client)[-1] == "CUSTOM_COW"


def test_new_class_is_usable_at_once(client: PlacementClient) -> None:
    rp = client.create_provider()
    inventories = f"/resource_providers/{rp['uuid']}/inventories"
    body = {"resource_provider_generation": 0, "inventories": {"CUSTOM_FPGA": {"total": 2}}}
    assert client.put(inventories, body).status_code == 400
    client.put("/resource_classes/CUSTOM_FPGA")
    assert client.put(inventories, body).status_code == 200


def test_delete(client: PlacementClient) -> None:
    resp = client.delete("/resource_classes/VCPU")
    assert resp.status_code == 400
    assert "Error in delete resource class: Cannot delete standard resource class VCPU." in (
        _detail(resp)
    )
    assert client.delete("/resource_classes/CUSTOM_NONE").status_code == 404

    client.put("/resource_classes/CUSTOM_GOLD")
    rp = client.create_provider()
    inventories = f"/resource_providers/{rp['uuid']}/inventories"
    body = {"resource_provider_generation": 0, "inventories": {"CUSTOM_GOLD": {"total": 5}}}
    client.put(inventories, body)
    resp = client.delete("/resource_classes/CUSTOM_GOLD")
    assert resp.status_code == 409
    assert (
        "Error in delete resource class: Cannot delete resource class CUSTOM_GOLD. "
        "Class is in use in inventory." in _detail(resp)
    )
    assert client.get("/resource_classes/CUSTOM_GOLD").status_code == 200

    assert client.delete(inventories).status_code == 204
    assert client.delete("/resource_classes/CUSTOM_GOLD").status_code == 204
    assert client.get("/resource_classes/CUSTOM_GOLD").status_code == 404
    assert "CUSTOM_GOLD" not in _names(client)
    body = {"resource_provider_generation": 2, "inventories": {"CUSTOM_GOLD": {"total": 5}}}
    assert client.put(inventories, body).status_code == 400


def test_last_modified_only_on_reads_from_1_15(client: PlacementClient) -> None:
    for path in ("/resource_classes", "/resource_classes/VCPU"):
        assert "last-modified" in client.get(path, microversion="1.15").headers
        assert client.get(path, microversion="1.15").headers["cache-control"] == "no-cache"
        assert "last-modified" not in client.get(path, microversion="1.14").headers
    resp = client.post("/resource_classes", {"name": "CUSTOM_A"}, microversion="1.15")
    assert "last-modified" not in resp.headers
    resp = client.put("/resource_classes/CUSTOM_B", microversion="1.15")
    assert resp.status_code == 201 and "last-modified" not in resp.headers


def test_catalog_writes_are_logged_as_catalog_changes(
    client: PlacementClient, services: Services
) -> None:
    with services.db.read() as conn:
        start = changes.latest(conn)
    client.put("/resource_classes/CUSTOM_A")
    client.put("/resource_classes/CUSTOM_A")  # already there: nothing written
    client.put("/resource_classes/CUSTOM_A", {"name": "CUSTOM_B"}, microversion="1.6")
    client.delete("/resource_classes/CUSTOM_B")
    with services.db.read() as conn:
        logged = changes.since(conn, start)
    assert [(c.scope, c.provider_ids) for c in logged] == [(changes.SCOPE_CATALOG, ())] * 3
