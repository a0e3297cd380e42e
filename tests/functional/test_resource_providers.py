"""Resource providers over HTTP: create, show, list, update (incl. re-parenting), delete."""

from __future__ import annotations

import uuid

from tests.conftest import PlacementClient


def test_create_before_1_20_is_201_with_location_and_no_body(client: PlacementClient) -> None:
    rp_uuid = str(uuid.uuid4())
    resp = client.post("/resource_providers", {"name": "cn1", "uuid": rp_uuid}, microversion="1.19")
    assert resp.status_code == 201
    assert resp.headers["location"].endswith(f"/resource_providers/{rp_uuid}")
    assert resp.content == b""


def test_create_from_1_20_returns_the_provider(client: PlacementClient) -> None:
    resp = client.post("/resource_providers", {"name": "cn1"}, microversion="1.20")
    assert resp.status_code == 200
    body = resp.json()
    assert body["name"] == "cn1" and body["generation"] == 0
    assert body["root_provider_uuid"] == body["uuid"] and body["parent_provider_uuid"] is None
    assert resp.headers["location"].endswith(f"/resource_providers/{body['uuid']}")
    assert "last-modified" in resp.headers and resp.headers["cache-control"] == "no-cache"


def test_uuid_without_dashes_is_normalized(client: PlacementClient) -> None:
    raw = uuid.uuid4()
    body = client.create_provider("cn1", uuid=raw.hex)
    assert body["uuid"] == str(raw)


def test_duplicate_name_and_uuid_conflict_with_code(client: PlacementClient) -> None:
    first = client.create_provider("cn1")
    resp = client.post("/resource_providers", {"name": "cn1"})
    assert resp.status_code == 409
    error = resp.json()["errors"][0]
    assert error["code"] == "placement.duplicate_name"
    assert "name: cn1" in error["detail"]
    resp = client.post("/resource_providers", {"name": "other", "uuid": first["uuid"]})
    assert resp.status_code == 409
    assert f"uuid: {first['uuid']}" in resp.json()["errors"][0]["detail"]


def test_bad_body_is_400_and_writes_nothing(client: PlacementClient) -> None:
    resp = client.post("/resource_providers", {"name": "x" * 201})
    assert resp.status_code == 400
    assert "JSON does not validate" in resp.json()["errors"][0]["detail"]
    resp = client.post("/resource_providers", {"name": "a", "parent_provider_uuid": "nope"})
    assert resp.status_code == 400
    assert client.get("/resource_providers").json() == {"resource_providers": []}


def test_wrong_content_type_is_415(client: PlacementClient) -> None:
    resp = client.client.post(
        "/resource_providers",
        content=b'{"name": "a"}',
        headers=client.headers(**{"content-type": "text/plain"}),
    )
    assert resp.status_code == 415
    assert "text/plain is not supported" in resp.json()["errors"][0]["detail"]


def test_nested_providers_and_in_tree(client: PlacementClient) -> None:
    root = client.create_provider("root")
    child = client.create_provider("child", parent_provider_uuid=root["uuid"])
    grandchild = client.create_provider("grandchild", parent_provider_uuid=child["uuid"])
    other = client.create_provider("other")
    assert grandchild["root_provider_uuid"] == root["uuid"]
    assert grandchild["parent_provider_uuid"] == child["uuid"]
    found = client.get("/resource_providers", params={"in_tree": child["uuid"]}).json()
    names = sorted(p["name"] for p in found["resource_providers"])
    assert names == ["child", "grandchild", "root"]
    assert other["uuid"] not in {p["uuid"] for p in found["resource_providers"]}


def test_parent_must_exist(client: PlacementClient) -> None:
    resp = client.post(
        "/resource_providers", {"name": "orphan", "parent_provider_uuid": str(uuid.uuid4())}
    )
    assert resp.status_code == 400
    assert "parent provider UUID does not exist" in resp.json()["errors"][0]["detail"]


def test_reparenting_needs_1_37_and_moves_the_subtree(client: PlacementClient) -> None:
    a = client.create_provider("a")
    b = client.create_provider("b")
    child = client.create_provider("child", parent_provider_uuid=a["uuid"])
    leaf = client.create_provider("leaf", parent_provider_uuid=child["uuid"])
    path = f"/resource_providers/{child['uuid']}"
    body = {"name": "child", "parent_provider_uuid": b["uuid"]}
    resp = client.put(path, body, microversion="1.36")
    assert resp.status_code == 400
    assert "re-parenting a provider is not currently allowed" in resp.text
    resp = client.put(path, body, microversion="1.37")
    assert resp.status_code == 200, resp.text
    assert resp.json()["root_provider_uuid"] == b["uuid"]
    moved = client.get(f"/resource_providers/{leaf['uuid']}").json()
    assert moved["root_provider_uuid"] == b["uuid"]
    # un-parenting makes the child a root for its whole subtree
    resp = client.put(path, {"name": "child", "parent_provider_uuid": None}, microversion="1.37")
    assert resp.status_code == 200
    moved = client.get(f"/resource_providers/{leaf['uuid']}").json()
    assert moved["root_provider_uuid"] == child["uuid"]


def test_reparenting_into_own_subtree_is_refused(client: PlacementClient) -> None:
    a = client.create_provider("a")
    child = client.create_provider("child", parent_provider_uuid=a["uuid"])
    resp = client.put(
        f"/resource_providers/{a['uuid']}",
        {"name": "a", "parent_provider_uuid": child["uuid"]},
        microversion="1.37",
    )
    assert resp.status_code == 400
    assert "creating loop in the provider tree is not allowed" in resp.text


def test_rename_conflict(client: PlacementClient) -> None:
    client.create_provider("a")
    b = client.create_provider("b")
    resp = client.put(f"/resource_providers/{b['uuid']}", {"name": "a"})
    assert resp.status_code == 409
    assert resp.json()["errors"][0]["code"] == "placement.duplicate_name"


def test_delete_parent_is_refused_then_allowed(client: PlacementClient) -> None:
    parent = client.create_provider("p")
    child = client.create_provider("c", parent_provider_uuid=parent["uuid"])
    resp = client.delete(f"/resource_providers/{parent['uuid']}")
    assert resp.status_code == 409
    assert resp.json()["errors"][0]["code"] == "placement.resource_provider.cannot_delete_parent"
    assert client.delete(f"/resource_providers/{child['uuid']}").status_code == 204
    assert client.delete(f"/resource_providers/{parent['uuid']}").status_code == 204
    resp = client.get(f"/resource_providers/{parent['uuid']}")
    assert resp.status_code == 404


def test_links_depend_on_microversion(client: PlacementClient) -> None:
    rp = client.create_provider("a")
    rels_10 = [
        link["rel"]
        for link in client.get(f"/resource_providers/{rp['uuid']}", microversion="1.0").json()[
            "links"
        ]
    ]
    assert rels_10 == ["self", "inventories", "usages"]
    rels_11 = [
        link["rel"]
        for link in client.get(f"/resource_providers/{rp['uuid']}", microversion="1.11").json()[
            "links"
        ]
    ]
    assert rels_11 == ["self", "inventories", "usages", "aggregates", "traits", "allocations"]
