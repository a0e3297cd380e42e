"""Traits over HTTP: the global catalog, its filters, and each provider's traits."""

from __future__ import annotations

from typing import Any

import os_traits
import pytest

from allotment.app import Services
from allotment.placement.store import changes
from tests.conftest import PlacementClient

INVALID_NAME = "The trait is invalid. A valid trait must be no longer than 255 characters"


def _detail(resp: Any) -> str:
    return str(resp.json()["errors"][0]["detail"])


def _traits(client: PlacementClient, query: str = "") -> list[str]:
    resp = client.get(f"/traits{query}")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["traits"])


def _rp_traits(client: PlacementClient, rp: dict[str, Any]) -> dict[str, Any]:
    resp = client.get(f"/resource_providers/{rp['uuid']}/traits")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/traits"),
        ("GET", "/traits/CUSTOM_A"),
        ("PUT", "/traits/CUSTOM_A"),
        ("DELETE", "/traits/CUSTOM_A"),
    ],
)
def test_hidden_before_1_6(client: PlacementClient, method: str, path: str) -> None:
    assert client.request(method, path, microversion="1.5").status_code == 404
    assert client.get("/traits/CUSTOM_A").status_code == 404


def test_standard_traits_are_there(client: PlacementClient) -> None:
    assert set(_traits(client)) == set(os_traits.get_traits())
    assert client.get("/traits/HW_CPU_X86_AVX").status_code == 204


@pytest.mark.parametrize(
    "name", ["TRAIT_X", "CUSTOM_ABC:1", "CUSTOM_lower", "CUSTOM_", "CUSTOM_" + "A" * 249]
)
def test_put_invalid_name_is_400(client: PlacementClient, name: str) -> None:
    resp = client.put(f"/traits/{name}")
    assert resp.status_code == 400
    assert INVALID_NAME in _detail(resp)
    assert _traits(client, "?name=startswith:CUSTOM") == []


def test_put_get_delete_trait(client: PlacementClient) -> None:
    resp = client.put("/traits/CUSTOM_T1", microversion="1.6")
    assert resp.status_code == 201
    assert resp.headers["location"].endswith("/traits/CUSTOM_T1")
    assert "content-type" not in resp.headers
    resp = client.put("/traits/CUSTOM_T1", microversion="1.6")
    assert resp.status_code == 204
    assert resp.headers["location"].endswith("/traits/CUSTOM_T1")

    assert client.get("/traits/CUSTOM_T1").status_code == 204
    resp = client.get("/traits/CUSTOM_NONE")
    assert resp.status_code == 404
    assert "No such trait(s): CUSTOM_NONE." in _detail(resp)

    assert client.delete("/traits/CUSTOM_T1").status_code == 204
    assert client.get("/traits/CUSTOM_T1").status_code == 404
    assert client.delete("/traits/CUSTOM_T1").status_code == 404
    resp = client.delete("/traits/HW_CPU_X86_AVX")
    assert resp.status_code == 400
    assert "Cannot delete standard trait HW_CPU_X86_AVX." in _detail(resp)


def test_list_filters(client: PlacementClient) -> None:
    for name in ("CUSTOM_TRAIT_1", "CUSTOM_TRAIT_2", "CUSTOM_OTHER"):
        client.put(f"/traits/{name}")
    assert _traits(client, "?name=in:CUSTOM_TRAIT_1,CUSTOM_OTHER,CUSTOM_NONE") == [
        "CUSTOM_TRAIT_1",
        "CUSTOM_OTHER",
    ]
    assert _traits(client, "?name=startswith:CUSTOM_TRAIT") == ["CUSTOM_TRAIT_1", "CUSTOM_TRAIT_2"]
    # A prefix is literal: "_" is not a wildcard.
    assert _traits(client, "?name=startswith:CUSTOM__RAIT") == []
    assert _traits(client, "?name=startswith:CUSTOM&associated=false") == [
        "CUSTOM_TRAIT_1",
        "CUSTOM_TRAIT_2",
        "CUSTOM_OTHER",
    ]
    assert _traits(client, "?associated=true") == []

    rp = client.create_provider()
    body = {"traits": ["CUSTOM_OTHER", "HW_CPU_X86_AVX"], "resource_provider_generation": 0}
    client.put(f"/resource_providers/{rp['uuid']}/traits", body)
    assert _traits(client, "?associated=TRUE") == ["HW_CPU_X86_AVX", "CUSTOM_OTHER"]
    assert _traits(client, "?name=startswith:CUSTOM&associated=false") == [
        "CUSTOM_TRAIT_1",
        "CUSTOM_TRAIT_2",
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?name=in_abc", 'Got: "in_abc"'),
        ("?associated=xyz", 'The query parameter "associated" only accepts "true" or "false"'),
        ("?invalid=abc", "Invalid query string parameters: Additional properties are not allowed"),
    ],
)
def test_list_bad_query_is_400(client: PlacementClient, query: str, expected: str) -> None:
    resp = client.get(f"/traits{query}")
    assert resp.status_code == 400
    assert expected in _detail(resp)


def test_provider_traits_lifecycle(client: PlacementClient) -> None:
    client.put("/traits/CUSTOM_T1")
    rp = client.create_provider()
    path = f"/resource_providers/{rp['uuid']}/traits"
    assert _rp_traits(client, rp) == {"traits": [], "resource_provider_generation": 0}

    body = {"traits": ["CUSTOM_T1", "HW_CPU_X86_AVX"], "resource_provider_generation": 0}
    resp = client.put(path, body)
    assert resp.status_code == 200
    assert resp.json() == {
        "traits": ["HW_CPU_X86_AVX", "CUSTOM_T1"],
        "resource_provider_generation": 1,
    }
    assert _rp_traits(client, rp) == resp.json()

    # The same set again changes nothing, so the generation stays.
    body["resource_provider_generation"] = 1
    assert client.put(path, body).json()["resource_provider_generation"] == 1

    resp = client.delete("/traits/CUSTOM_T1")
    assert resp.status_code == 409
    assert "The trait CUSTOM_T1 is in use by a resource provider." in _detail(resp)

    assert client.delete(path).status_code == 204
    assert _rp_traits(client, rp) == {"traits": [], "resource_provider_generation": 2}
    assert client.delete(path).status_code == 204  # nothing to remove: no new generation
    assert _rp_traits(client, rp)["resource_provider_generation"] == 2
    assert client.delete("/traits/CUSTOM_T1").status_code == 204


def test_provider_traits_generation_conflict(client: PlacementClient) -> None:
    rp = client.create_provider()
    path = f"/resource_providers/{rp['uuid']}/traits"
    body = {"traits": ["HW_CPU_X86_AVX"], "resource_provider_generation": 5}
    resp = client.put(path, body, microversion="1.23")
    assert resp.status_code == 409
    error = resp.json()["errors"][0]
    assert error["code"] == "placement.concurrent_update"
    assert "Resource provider's generation already changed." in error["detail"]
    assert _rp_traits(client, rp) == {"traits": [], "resource_provider_generation": 0}


def test_provider_unknown_traits_are_400_and_change_nothing(client: PlacementClient) -> None:
    rp = client.create_provider()
    path = f"/resource_providers/{rp['uuid']}/traits"
    client.put(path, {"traits": ["HW_CPU_X86_AVX"], "resource_provider_generation": 0})
    body = {
        "traits": ["CUSTOM_NOPE1", "HW_CPU_X86_SSE", "NOPE2"],
        "resource_provider_generation": 1,
    }
    resp = client.put(path, body)
    assert resp.status_code == 400
    assert "No such trait CUSTOM_NOPE1, NOPE2" in _detail(resp)
    assert _rp_traits(client, rp) == {
        "traits": ["HW_CPU_X86_AVX"],
        "resource_provider_generation": 1,
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"traits": ["HW_CPU_X86_AVX"]}, "'resource_provider_generation' is a required property"),
        ({"traits": "HW", "resource_provider_generation": 0}, "'HW' is not of type 'array'"),
        (
            {"traits": [], "resource_provider_generation": "x"},
            "'x' is not of type 'integer'",
        ),
        (
            {"traits": [], "resource_provider_generation": 0, "extra": 1},
            "Additional properties are not allowed",
        ),
    ],
)
def test_provider_traits_bad_body_is_400(
    client: PlacementClient, body: dict[str, Any], expected: str
) -> None:
    rp = client.create_provider()
    resp = client.put(f"/resource_providers/{rp['uuid']}/traits", body)
    assert resp.status_code == 400
    assert expected in _detail(resp)


def test_provider_traits_of_missing_provider_are_404(client: PlacementClient) -> None:
    path = "/resource_providers/0c3b7e4e-2e60-4b53-9b88-0a8b1ed1d0b1/traits"
    resp = client.get(path)
    assert resp.status_code == 404
    assert "No resource provider with uuid 0c3b7e4e-2e60-4b53-9b88-0a8b1ed1d0b1 found" in (
        _detail(resp)
    )
    assert client.put(path, {"traits": [], "resource_provider_generation": 0}).status_code == 404
    assert client.delete(path).status_code == 404
    for method in ("GET", "PUT", "DELETE"):
        assert client.request(method, path, microversion="1.5").status_code == 404


def test_deleting_provider_releases_its_traits(client: PlacementClient) -> None:
    client.put("/traits/CUSTOM_T1")
    rp = client.create_provider()
    path = f"/resource_providers/{rp['uuid']}/traits"
    client.put(path, {"traits": ["CUSTOM_T1"], "resource_provider_generation": 0})
    assert client.delete(f"/resource_providers/{rp['uuid']}").status_code == 204
    assert client.delete("/traits/CUSTOM_T1").status_code == 204


def test_cache_headers(client: PlacementClient) -> None:
    client.put("/traits/CUSTOM_T1")
    rp = client.create_provider()
    path = f"/resource_providers/{rp['uuid']}/traits"
    client.put(path, {"traits": ["CUSTOM_T1"], "resource_provider_generation": 0})
    body = {"traits": ["CUSTOM_T1"], "resource_provider_generation": 1}
    for method, url, data in [
        ("GET", "/traits", None),
        ("GET", "/traits/CUSTOM_T1", None),
        ("PUT", "/traits/CUSTOM_T1", None),
        ("PUT", path, body),
        ("GET", path, None),
    ]:
        old = client.request(method, url, data, microversion="1.14")
        assert "last-modified" not in old.headers and "cache-control" not in old.headers, url
        new = client.request(method, url, data, microversion="1.15")
        assert new.headers["cache-control"] == "no-cache", url
        assert new.headers["last-modified"].endswith(" GMT"), url
    assert "last-modified" not in client.delete(path, microversion="1.15").headers


def test_provider_trait_changes_touch_the_provider(
    client: PlacementClient, services: Services
) -> None:
    rp = client.create_provider()
    provider_id = services.placement.get_provider(rp["uuid"]).id
    with services.db.read() as conn:
        start = changes.latest(conn)
    path = f"/resource_providers/{rp['uuid']}/traits"
    body = {"traits": ["HW_CPU_X86_AVX"], "resource_provider_generation": 0}
    client.put(path, body)
    client.put("/traits/CUSTOM_T1")
    with services.db.read() as conn:
        logged = changes.since(conn, start)
    assert [(c.scope, c.provider_ids) for c in logged] == [
        (changes.SCOPE_PROVIDERS, (provider_id,)),
        (changes.SCOPE_CATALOG, ()),
    ]
