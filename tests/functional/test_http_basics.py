"""Version negotiation, error bodies, request ids, auth: the behaviour every route shares."""

from __future__ import annotations

from tests.conftest import PlacementClient


def test_root_needs_no_token_and_lists_versions(client: PlacementClient) -> None:
    resp = client.client.get("/")
    assert resp.status_code == 200
    version = resp.json()["versions"][0]
    assert (version["min_version"], version["max_version"]) == ("1.0", "1.39")


def test_missing_token_is_401(client: PlacementClient) -> None:
    resp = client.client.get("/resource_providers")
    assert resp.status_code == 401
    assert resp.json()["errors"][0]["request_id"].startswith("req-")


def test_microversion_headers_on_success_and_error(client: PlacementClient) -> None:
    resp = client.get("/resource_providers", microversion="1.14")
    assert resp.headers["openstack-api-version"] == "placement 1.14"
    assert "openstack-api-version" in resp.headers["vary"]
    resp = client.get("/nowhere", microversion="1.23")
    assert resp.status_code == 404
    assert resp.headers["openstack-api-version"] == "placement 1.23"
    assert resp.json()["errors"][0]["code"] == "placement.undefined_code"


def test_latest_and_out_of_range(client: PlacementClient) -> None:
    assert client.get("/", microversion="latest").headers["openstack-api-version"] == (
        "placement 1.39"
    )
    resp = client.get("/", microversion="1.40")
    assert resp.status_code == 406
    error = resp.json()["errors"][0]
    assert (error["min_version"], error["max_version"]) == ("1.0", "1.39")
    resp = client.get("/", microversion="1.2.3")
    assert resp.status_code == 400
    assert "invalid version string" in resp.json()["errors"][0]["detail"]


def test_error_code_only_from_1_23(client: PlacementClient) -> None:
    assert "code" not in client.get("/nowhere", microversion="1.22").json()["errors"][0]


def test_405_lists_allowed_methods(client: PlacementClient) -> None:
    resp = client.delete("/resource_providers")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, POST"
    resp = client.delete("/")
    assert resp.headers["allow"] == "GET"


def test_request_id_header_matches_error_body(client: PlacementClient) -> None:
    resp = client.get("/resource_providers/6d8bd1a6-97ad-4fd8-a1bc-9d1b48d42b0f")
    assert resp.status_code == 404
    assert resp.json()["errors"][0]["request_id"] == resp.headers["x-openstack-request-id"]


def test_malformed_json_is_400(client: PlacementClient) -> None:
    resp = client.client.post(
        "/resource_providers",
        content=b'{"name": ',
        headers=client.headers(**{"content-type": "application/json"}),
    )
    assert resp.status_code == 400
    assert "Malformed JSON" in resp.json()["errors"][0]["detail"]
