"""GET /allocation_candidates over HTTP: response shapes per microversion, bad input, and
this process's own writes showing in the very next answer."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from allotment.app import Services
from tests.conftest import PlacementClient

AGG = "4f3c7a1e-7d0e-4f6e-9f1e-2c7b1d0a9e11"


def _inventory(client: PlacementClient, rp: dict[str, Any], **classes: dict[str, Any]) -> None:
    current = client.get(f"/resource_providers/{rp['uuid']}").json()["generation"]
    resp = client.put(
        f"/resource_providers/{rp['uuid']}/inventories",
        {"resource_provider_generation": current, "inventories": classes},
    )
    assert resp.status_code == 200, resp.text


def _traits(client: PlacementClient, rp: dict[str, Any], *names: str) -> None:
    for name in names:
        if name.startswith("CUSTOM_"):
            assert client.put(f"/traits/{name}").status_code in (201, 204)
    current = client.get(f"/resource_providers/{rp['uuid']}").json()["generation"]
    resp = client.put(
        f"/resource_providers/{rp['uuid']}/traits",
        {"traits": list(names), "resource_provider_generation": current},
    )
    assert resp.status_code == 200, resp.text


def _aggregates(client: PlacementClient, rp: dict[str, Any], *aggs: str) -> None:
    current = client.get(f"/resource_providers/{rp['uuid']}").json()["generation"]
    resp = client.put(
        f"/resource_providers/{rp['uuid']}/aggregates",
        {"aggregates": list(aggs), "resource_provider_generation": current},
    )
    assert resp.status_code == 200, resp.text


def _claim(client: PlacementClient, allocations: dict[str, dict[str, int]]) -> Any:
    body = {
        "allocations": {rp: {"resources": res} for rp, res in allocations.items()},
        "consumer_generation": None,
        "project_id": "p",
        "user_id": "u",
        "consumer_type": "INSTANCE",
    }
    return client.put(f"/allocations/{uuid.uuid4()}", body)


@pytest.fixture
def cloud(client: PlacementClient) -> dict[str, dict[str, Any]]:
    """cn1 (VCPU, MEMORY_MB, AVX2) with a child pf1 (SRIOV_NET_VF); cn2 (VCPU, MEMORY_MB,
    DISK_GB); ss: DISK_GB shared with cn1 through an aggregate."""
    cn1 = client.create_provider("cn1")
    cn2 = client.create_provider("cn2")
    pf1 = client.create_provider("pf1", parent_provider_uuid=cn1["uuid"])
    ss = client.create_provider("ss")
    for cn in (cn1, cn2):
        _inventory(client, cn, VCPU={"total": 8}, MEMORY_MB={"total": 4096})
    _inventory(client, cn2, VCPU={"total": 8}, MEMORY_MB={"total": 4096}, DISK_GB={"total": 100})
    _inventory(client, pf1, SRIOV_NET_VF={"total": 4})
    _inventory(client, ss, DISK_GB={"total": 1000, "reserved": 100})
    _traits(client, cn1, "HW_CPU_X86_AVX2")
    _traits(client, ss, "MISC_SHARES_VIA_AGGREGATE")
    _aggregates(client, cn1, AGG)
    _aggregates(client, ss, AGG)
    return {"cn1": cn1, "cn2": cn2, "pf1": pf1, "ss": ss}


def _candidates(client: PlacementClient, version: str = "latest", **query: Any) -> Any:
    resp = client.get("/allocation_candidates", params=query, microversion=version)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_sharing_and_nesting_latest_shape(
    client: PlacementClient, cloud: dict[str, dict[str, Any]]
) -> None:
    cn1, cn2, ss = cloud["cn1"]["uuid"], cloud["cn2"]["uuid"], cloud["ss"]["uuid"]
    body = _candidates(client, resources="VCPU:1,DISK_GB:10")
    found = sorted(
        sorted((rp, tuple(sorted(r["resources"].items()))) for rp, r in c["allocations"].items())
        for c in body["allocation_requests"]
    )
    assert found == sorted(
        [
            sorted([(cn1, (("VCPU", 1),)), (ss, (("DISK_GB", 10),))]),
            [(cn2, (("DISK_GB", 10), ("VCPU", 1)))],
        ]
    )
    for candidate in body["allocation_requests"]:
        assert sorted(candidate["mappings"][""]) == sorted(candidate["allocations"])
    summaries = body["provider_summaries"]
    # Whole trees of the providers used: cn1 brings its child pf1.
    assert set(summaries) == {cn1, cloud["pf1"]["uuid"], cn2, ss}
    assert summaries[ss] == {
        "resources": {"DISK_GB": {"capacity": 900, "used": 0}},
        "traits": ["MISC_SHARES_VIA_AGGREGATE"],
        "parent_provider_uuid": None,
        "root_provider_uuid": ss,
    }
    assert summaries[cloud["pf1"]["uuid"]]["parent_provider_uuid"] == cn1


def test_microversion_shapes(client: PlacementClient, cloud: dict[str, dict[str, Any]]) -> None:
    cn2 = cloud["cn2"]["uuid"]
    old = _candidates(client, "1.10", resources="VCPU:1,MEMORY_MB:512,DISK_GB:10")
    # 1.10: allocations are a list; summaries only resources, only the requested classes.
    lists = [c["allocations"] for c in old["allocation_requests"]]
    assert {
        "resource_provider": {"uuid": cn2},
        "resources": {"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 10},
    } in [a for allocs in lists for a in allocs]
    assert set(old["provider_summaries"][cn2]) == {"resources"}
    # 1.12: a dict of providers, no mappings before 1.34.
    v12 = _candidates(client, "1.12", resources="DISK_GB:10")
    assert all("mappings" not in c for c in v12["allocation_requests"])
    assert any(cn2 in c["allocations"] for c in v12["allocation_requests"])
    # 1.17 traits; 1.26 only requested classes; 1.27 every class; 1.29 tree links.
    v26 = _candidates(client, "1.26", resources="DISK_GB:10")
    assert set(v26["provider_summaries"][cn2]["resources"]) == {"DISK_GB"}
    assert v26["provider_summaries"][cn2]["traits"] == []
    v27 = _candidates(client, "1.27", resources="DISK_GB:10")
    assert set(v27["provider_summaries"][cn2]["resources"]) == {"VCPU", "MEMORY_MB", "DISK_GB"}
    assert "root_provider_uuid" not in v27["provider_summaries"][cn2]
    v29 = _candidates(client, "1.29", resources="DISK_GB:10")
    assert v29["provider_summaries"][cn2]["root_provider_uuid"] == cn2


def test_before_1_29_one_provider_per_tree(
    client: PlacementClient, cloud: dict[str, dict[str, Any]]
) -> None:
    assert (
        _candidates(client, "1.28", resources="VCPU:1,SRIOV_NET_VF:1")["allocation_requests"] == []
    )
    nested = _candidates(client, "1.29", resources="VCPU:1,SRIOV_NET_VF:1")
    assert len(nested["allocation_requests"]) == 1


def test_cache_headers_from_1_15(client: PlacementClient, cloud: dict[str, dict[str, Any]]) -> None:
    old = client.get("/allocation_candidates", params={"resources": "VCPU:1"}, microversion="1.14")
    assert "last-modified" not in old.headers
    new = client.get("/allocation_candidates", params={"resources": "VCPU:1"}, microversion="1.15")
    assert new.headers["cache-control"] == "no-cache" and "last-modified" in new.headers


def test_granular_isolate_traits_and_aggregates(
    client: PlacementClient, cloud: dict[str, dict[str, Any]]
) -> None:
    cn1, ss = cloud["cn1"]["uuid"], cloud["ss"]["uuid"]
    body = _candidates(
        client,
        resources1="VCPU:1",
        required1="HW_CPU_X86_AVX2",
        resources2="DISK_GB:5",
        member_of2=AGG,
        group_policy="isolate",
    )
    assert [c["mappings"] for c in body["allocation_requests"]] == [{"1": [cn1], "2": [ss]}]
    forbidden = _candidates(client, resources="VCPU:1", required="!HW_CPU_X86_AVX2")
    assert [list(c["allocations"]) for c in forbidden["allocation_requests"]] == [
        [cloud["cn2"]["uuid"]]
    ]
    any_of = _candidates(client, resources="VCPU:1", required="in:HW_CPU_X86_AVX2,HW_CPU_X86_SSE")
    assert len(any_of["allocation_requests"]) == 1


def test_own_writes_show_at_once(client: PlacementClient, cloud: dict[str, dict[str, Any]]) -> None:
    cn1, cn2 = cloud["cn1"]["uuid"], cloud["cn2"]["uuid"]
    assert _claim(client, {cn2: {"VCPU": 7}}).status_code == 204
    body = _candidates(client, resources="VCPU:2")
    assert [list(c["allocations"]) for c in body["allocation_requests"]] == [[cn1]]
    assert body["provider_summaries"][cn1]["resources"]["VCPU"]["used"] == 0
    one = _candidates(client, resources="VCPU:1")
    assert one["provider_summaries"][cn2]["resources"]["VCPU"] == {"capacity": 8, "used": 7}
    _inventory(client, cloud["cn1"], VCPU={"total": 1}, MEMORY_MB={"total": 4096})
    assert _candidates(client, resources="VCPU:2")["allocation_requests"] == []


def test_limit(client: PlacementClient, cloud: dict[str, dict[str, Any]]) -> None:
    body = _candidates(client, resources="DISK_GB:10", limit="1")
    assert len(body["allocation_requests"]) == 1
    (used,) = body["allocation_requests"][0]["allocations"]
    assert set(body["provider_summaries"]) == {used}


@pytest.mark.parametrize(
    ("version", "query", "message", "code"),
    [
        ("1.8", {"resources": "VCPU:1"}, None, None),
        ("1.10", {"resources": ""}, "Got: empty string.", None),
        ("1.10", {}, "'resources' is a required property", None),
        ("1.10", {"resources": "VCPU:x"}, "expected positive integer amount. Got: x.", None),
        ("1.10", {"resources": "VCPU:0"}, "requires amount >= 1. Got: 0.", None),
        (
            "1.10",
            {"resources": "NOPE:1"},
            "Invalid resource class in resources parameter: No such resource class NOPE.",
            None,
        ),
        (
            "1.17",
            {"resources": "VCPU:1", "required": "CUSTOM_NOPE"},
            "No such trait(s): CUSTOM_NOPE.",
            None,
        ),
        ("1.16", {"resources": "VCPU:1", "limit": "0"}, "Failed validating 'pattern'", None),
        ("1.15", {"resources": "VCPU:1", "limit": "1"}, "'limit' was unexpected", None),
        (
            "1.25",
            {"resources01": "VCPU:1"},
            "'resources01' does not match any of the regexes",
            None,
        ),
        (
            "1.25",
            {"resources1": "VCPU:1", "resources2": "VCPU:1"},
            'The "group_policy" parameter is required',
            None,
        ),
        (
            "1.36",
            {"resources_A": "VCPU:1", "same_subtree": "_A,_B"},
            "Real suffixes should be specified in `same_subtree`: ['_B'] not found in ['_A'].",
            "placement.query.bad_value",
        ),
        (
            "1.36",
            {"resources_A": "VCPU:1", "required_B": "HW_CPU_X86_AVX2"},
            "Resourceless suffixed group request should be specified in `same_subtree` query "
            "param: bad group(s) - ['_B'].",
            "placement.query.bad_value",
        ),
        (
            "1.35",
            {"resources": "VCPU:1", "root_required": "A,!A"},
            "Conflicting required and forbidden traits found in root_required: A",
            "placement.query.bad_value",
        ),
        (
            "1.22",
            {"resources": "VCPU:1", "required": "CUSTOM_A,!CUSTOM_A"},
            "Conflicting required and forbidden traits found in the following traits keys: "
            "required: (CUSTOM_A)",
            None,
        ),
        (
            "1.31",
            {"resources": "VCPU:1", "member_of": "!" + AGG},
            "Forbidden member_of parameters are not supported",
            None,
        ),
        (
            "1.31",
            {"resources": "VCPU:1", "in_tree": "not-a-uuid"},
            "Expected 'in_tree' parameter to be a format of uuid",
            None,
        ),
        (
            "1.38",
            {"resources": "VCPU:1", "required": "in:A,B"},
            "only supported since microversion 1.39",
            None,
        ),
    ],
)
def test_bad_input(
    client: PlacementClient,
    version: str,
    query: dict[str, str],
    message: str | None,
    code: str | None,
) -> None:
    resp = client.get("/allocation_candidates", params=query, microversion=version)
    if message is None:
        assert resp.status_code == 404
        return
    assert resp.status_code == 400, resp.text
    error = resp.json()["errors"][0]
    assert message in error["detail"]
    if code is not None:
        assert error["code"] == code


def test_randomized_and_bounded_answers(client: PlacementClient, services: Services) -> None:
    hosts = [client.create_provider(f"h{i}")["uuid"] for i in range(8)]
    for h in hosts:
        _inventory(client, {"uuid": h}, VCPU={"total": 4})
    ordered = _candidates(client, resources="VCPU:1")["allocation_requests"]
    services.placement.randomize_candidates = True
    shuffled = _candidates(client, resources="VCPU:1")["allocation_requests"]
    assert sorted(map(str, shuffled)) == sorted(map(str, ordered))
    picks = {
        tuple(
            sorted(
                rp
                for c in _candidates(client, resources="VCPU:1", limit="2")["allocation_requests"]
                for rp in c["allocations"]
            )
        )
        for _ in range(20)
    }
    assert len(picks) > 1
    services.placement.randomize_candidates = False
    services.placement.max_candidates = 3
    assert len(_candidates(client, resources="VCPU:1")["allocation_requests"]) == 3
    assert len(_candidates(client, resources="VCPU:1", limit="2")["allocation_requests"]) == 2
    over = client.get("/allocation_candidates", params={"resources": "VCPU:1", "limit": "5"})
    assert over.status_code == 400, over.text
    assert "cap of 3" in over.json()["errors"][0]["detail"]


def test_shared_only_unsuffixed_group_combines_with_every_tree(client: PlacementClient) -> None:
    """DISK_GB only from a storage pool shared with two hosts, VCPU from a host: one
    candidate per host. (Upstream returns one of the two, whichever tree it met first.)"""
    hosts = [client.create_provider(f"cn{i}") for i in range(2)]
    pool = client.create_provider("pool")
    for host in hosts:
        _inventory(client, host, VCPU={"total": 4})
        _aggregates(client, host, AGG)
    _inventory(client, pool, DISK_GB={"total": 100})
    _traits(client, pool, "MISC_SHARES_VIA_AGGREGATE")
    _aggregates(client, pool, AGG)
    body = _candidates(client, resources="DISK_GB:10", resources1="VCPU:1")
    assert sorted(sorted(c["allocations"]) for c in body["allocation_requests"]) == sorted(
        sorted([host["uuid"], pool["uuid"]]) for host in hosts
    )


def test_summaries_follow_every_change_to_a_provider(client: PlacementClient) -> None:
    """Provider summaries are rendered once per provider version and reused: each kind of
    change (usage, inventory, traits, a renamed class) must show in the next answer."""
    cn = client.create_provider("cn")
    other = client.create_provider("other")
    for rp in (cn, other):
        _inventory(client, rp, VCPU={"total": 8})
    assert client.post("/resource_classes", {"name": "CUSTOM_OLD"}).status_code == 201
    _inventory(client, cn, VCPU={"total": 8}, CUSTOM_OLD={"total": 5})

    def summary(version: str = "1.39") -> dict[str, Any]:
        found: dict[str, Any] = _candidates(client, version, resources="VCPU:1")
        return found["provider_summaries"][cn["uuid"]]

    assert summary()["resources"]["VCPU"] == {"capacity": 8, "used": 0}
    assert summary("1.28")["resources"]["CUSTOM_OLD"] == {"capacity": 5, "used": 0}
    assert _claim(client, {cn["uuid"]: {"VCPU": 3}}).status_code == 204
    assert summary()["resources"]["VCPU"] == {"capacity": 8, "used": 3}
    assert summary("1.28")["resources"]["VCPU"] == {"capacity": 8, "used": 3}
    _inventory(client, cn, VCPU={"total": 16, "allocation_ratio": 2.0}, CUSTOM_OLD={"total": 5})
    assert summary()["resources"]["VCPU"] == {"capacity": 32, "used": 3}
    _traits(client, cn, "HW_CPU_X86_AVX2")
    assert summary()["traits"] == ["HW_CPU_X86_AVX2"]
    renamed = client.put("/resource_classes/CUSTOM_OLD", {"name": "CUSTOM_NEW"}, microversion="1.2")
    assert renamed.status_code == 200, renamed.text
    assert set(summary()["resources"]) == {"VCPU", "CUSTOM_NEW"}
    assert set(_candidates(client, resources="VCPU:1")["provider_summaries"]) == {
        cn["uuid"],
        other["uuid"],
    }


@pytest.mark.parametrize("version", ["1.10", "1.12", "1.34", "1.39"])
def test_byte_layout_matches_the_template_rendering(
    client: PlacementClient,
    cloud: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    version: str,
) -> None:
    """Allocation requests are laid out as bytes when every uuid is 36 characters (always,
    as placement stores them canonical) and through %-templates otherwise: both must write
    the same JSON, for every response shape, with candidates of several shapes in one
    answer (one provider for both groups, or two)."""
    from allotment.placement.api import allocation_candidates as api

    query: dict[str, str] = {"resources": "VCPU:1,DISK_GB:10"}
    if version >= "1.25":
        query |= {"resources1": "MEMORY_MB:512", "group_policy": "none"}
    by_bytes = _candidates(client, version, **query)["allocation_requests"]
    monkeypatch.setattr(api, "_uuid_bytes", lambda uuids: None)
    by_template = _candidates(client, version, **query)["allocation_requests"]
    assert by_bytes == by_template
    # cn2 alone, or cn1 with the shared disk: two shapes in one answer.
    assert {len(c["allocations"]) for c in by_bytes} == {1, 2}
