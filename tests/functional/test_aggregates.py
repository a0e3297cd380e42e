"""Provider aggregates over HTTP: the bare-list API up to 1.18, generations from 1.19."""

from __future__ import annotations

from typing import Any

import pytest

from allotment.app import Services
from allotment.placement.store import changes
from tests.conftest import PlacementClient

AGG_1 = "f918801a-5e54-4bee-9095-09a9d0c786b8"
AGG_2 = "a893eb5c-e2a0-4251-ab26-f71d3b0cfc0b"
AGG_3 = "282d469e-29e2-4a8a-8f2e-31b3202b696a"
MISSING = "6984bb2d-830d-4c8d-ac64-c5a8103664be"


def _path(rp: dict[str, Any]) -> str:
    return f"/resource_providers/{rp['uuid']}/aggregates"


def _detail(resp: Any) -> str:
    return str(resp.json()["errors"][0]["detail"])


def _generation(client: PlacementClient, rp: dict[str, Any]) -> int:
    return int(client.get(f"/resource_providers/{rp['uuid']}").json()["generation"])


def test_hidden_before_1_1(client: PlacementClient) -> None:
    rp = client.create_provider()
    assert client.get(_path(rp), microversion="1.0").status_code == 404
    assert client.put(_path(rp), [AGG_1], microversion="1.0").status_code == 404
    assert client.get(_path(rp), microversion="1.1").json() == {"aggregates": []}


def test_generation_api_from_1_19(client: PlacementClient) -> None:
    rp = client.create_provider()
    assert client.get(_path(rp)).json() == {"aggregates": [], "resource_provider_generation": 0}

    resp = client.put(_path(rp), {"aggregates": [AGG_1, AGG_2], "resource_provider_generation": 0})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"aggregates": [AGG_1, AGG_2], "resource_provider_generation": 1}
    assert client.get(_path(rp)).json() == resp.json()

    # From 1.19 every successful PUT moves the generation on, even when nothing changed.
    resp = client.put(_path(rp), {"aggregates": [AGG_2, AGG_1], "resource_provider_generation": 1})
    assert resp.json()["resource_provider_generation"] == 2

    resp = client.put(_path(rp), {"aggregates": [], "resource_provider_generation": 1})
    assert resp.status_code == 409
    assert resp.json()["errors"][0]["code"] == "placement.concurrent_update"
    assert "Resource provider's generation already changed." in _detail(resp)
    assert len(client.get(_path(rp)).json()["aggregates"]) == 2

    resp = client.put(_path(rp), {"aggregates": [], "resource_provider_generation": 2})
    assert resp.json() == {"aggregates": [], "resource_provider_generation": 3}


def test_bare_list_api_up_to_1_18(client: PlacementClient) -> None:
    rp = client.create_provider()
    resp = client.put(_path(rp), [AGG_1, AGG_2], microversion="1.18")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"aggregates": [AGG_1, AGG_2]}
    assert client.get(_path(rp), microversion="1.18").json() == {"aggregates": [AGG_1, AGG_2]}
    assert _generation(client, rp) == 0  # the old API never touched the generation
    resp = client.put(_path(rp), [AGG_2], microversion="1.18")
    assert resp.json() == {"aggregates": [AGG_2]}
    assert client.get(_path(rp)).json() == {
        "aggregates": [AGG_2],
        "resource_provider_generation": 0,
    }


@pytest.mark.parametrize(
    ("microversion", "body", "expected"),
    [
        ("1.19", [AGG_1], "JSON does not validate"),
        ("1.18", {"aggregates": [AGG_1], "resource_provider_generation": 0}, "is not of type"),
        ("1.19", {"aggregates": [AGG_1]}, "'resource_provider_generation' is a required property"),
        (
            "1.19",
            {"aggregates": ["harry", "sally"], "resource_provider_generation": 0},
            "is not a 'uuid'",
        ),
        (
            "1.19",
            {"aggregates": [AGG_1, AGG_1], "resource_provider_generation": 0},
            "has non-unique elements",
        ),
        ("1.18", ["harry"], "'harry' is not a 'uuid'"),
    ],
)
def test_bad_body_is_400_and_writes_nothing(
    client: PlacementClient, microversion: str, body: Any, expected: str
) -> None:
    rp = client.create_provider()
    resp = client.put(_path(rp), body, microversion=microversion)
    assert resp.status_code == 400
    assert expected in _detail(resp)
    assert client.get(_path(rp)).json() == {"aggregates": [], "resource_provider_generation": 0}


def test_malformed_json_and_wrong_content_type(client: PlacementClient) -> None:
    rp = client.create_provider()
    headers = client.headers(**{"content-type": "application/json"})
    resp = client.client.put(_path(rp), content=b'{"bad", "not json"}', headers=headers)
    assert resp.status_code == 400
    assert "Malformed JSON" in _detail(resp)
    headers = client.headers(**{"content-type": "text/plain"})
    assert client.client.put(_path(rp), content=b"[]", headers=headers).status_code == 415


def test_missing_provider_is_404(client: PlacementClient) -> None:
    path = f"/resource_providers/{MISSING}/aggregates"
    assert client.get(path).status_code == 404
    resp = client.put(path, {"aggregates": [], "resource_provider_generation": 0})
    assert resp.status_code == 404
    assert f"No resource provider with uuid {MISSING} found" in _detail(resp)
    # The provider is looked up before the body is checked, as upstream.
    assert client.put(path, {"bogus": 1}).status_code == 404


def test_aggregates_are_shared_and_listed_in_first_seen_order(client: PlacementClient) -> None:
    rp1, rp2 = client.create_provider(), client.create_provider()
    client.put(_path(rp1), {"aggregates": [AGG_3, AGG_1], "resource_provider_generation": 0})
    client.put(_path(rp2), {"aggregates": [AGG_1, AGG_2], "resource_provider_generation": 0})
    assert client.get(_path(rp1)).json()["aggregates"] == [AGG_3, AGG_1]
    assert client.get(_path(rp2)).json()["aggregates"] == [AGG_1, AGG_2]
    client.put(_path(rp1), {"aggregates": [], "resource_provider_generation": 1})
    assert client.get(_path(rp2)).json()["aggregates"] == [AGG_1, AGG_2]


def test_long_uuid_spellings_are_stored_canonically(client: PlacementClient) -> None:
    rp = client.create_provider()
    body = {
        "aggregates": [f"{{{AGG_1}}}", AGG_2.replace("-", "")],
        "resource_provider_generation": 0,
    }
    resp = client.put(_path(rp), body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["aggregates"] == [AGG_1, AGG_2.replace("-", "")]


def test_deleting_provider_drops_its_memberships(client: PlacementClient) -> None:
    rp1, rp2 = client.create_provider(), client.create_provider()
    client.put(_path(rp1), [AGG_1], microversion="1.18")
    client.put(_path(rp2), [AGG_1], microversion="1.18")
    assert client.delete(f"/resource_providers/{rp1['uuid']}").status_code == 204
    assert client.get(_path(rp2)).json()["aggregates"] == [AGG_1]


def test_cache_headers(client: PlacementClient) -> None:
    rp = client.create_provider()
    for method, body in (("GET", None), ("PUT", [AGG_1])):
        old = client.request(method, _path(rp), body, microversion="1.14")
        assert "last-modified" not in old.headers and "cache-control" not in old.headers
        new = client.request(method, _path(rp), body, microversion="1.15")
        assert new.headers["cache-control"] == "no-cache"
        assert new.headers["last-modified"].endswith(" GMT")


def test_membership_changes_touch_the_provider(client: PlacementClient, services: Services) -> None:
    rp = client.create_provider()
    provider_id = services.placement.get_provider(rp["uuid"]).id
    with services.db.read() as conn:
        start = changes.latest(conn)
    client.put(_path(rp), [AGG_1], microversion="1.18")
    client.put(_path(rp), [AGG_1], microversion="1.18")  # no change, no generation: no log
    client.put(_path(rp), {"aggregates": [AGG_1], "resource_provider_generation": 0})
    with services.db.read() as conn:
        logged = changes.since(conn, start)
    assert [(c.scope, c.provider_ids) for c in logged] == [
        (changes.SCOPE_PROVIDERS, (provider_id,))
    ] * 2
