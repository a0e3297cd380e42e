"""GET /resource_providers filters answered by the capacity index: member_of (1.3),
resources (1.4), required (1.18; forbidden 1.22; any-of and repetition 1.39)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import PlacementClient
from tests.functional.test_allocation_candidates import _aggregates, _claim, _inventory, _traits

AGG_A = "11111111-2222-4333-8444-555555555555"
AGG_B = "66666666-7777-4888-8999-aaaaaaaaaaaa"


@pytest.fixture
def providers(client: PlacementClient) -> dict[str, str]:
    a = client.create_provider("a")
    b = client.create_provider("b")
    c = client.create_provider("c")
    _inventory(client, a, VCPU={"total": 4}, DISK_GB={"total": 100, "step_size": 10})
    _inventory(client, b, VCPU={"total": 8})
    _traits(client, a, "HW_CPU_X86_AVX2", "CUSTOM_GOLD")
    _traits(client, b, "HW_CPU_X86_AVX2")
    _aggregates(client, a, AGG_A)
    _aggregates(client, b, AGG_A, AGG_B)
    return {"a": a["uuid"], "b": b["uuid"], "c": c["uuid"]}


def _names(client: PlacementClient, version: str = "latest", **query: Any) -> list[str]:
    resp = client.get("/resource_providers", params=query, microversion=version)
    assert resp.status_code == 200, resp.text
    return sorted(p["name"] for p in resp.json()["resource_providers"])


def test_resources(client: PlacementClient, providers: dict[str, str]) -> None:
    assert _names(client, "1.4", resources="VCPU:4") == ["a", "b"]
    assert _names(client, "1.4", resources="VCPU:5") == ["b"]
    assert _names(client, "1.4", resources="VCPU:1,DISK_GB:10") == ["a"]
    # step_size 10
    assert _names(client, "1.4", resources="DISK_GB:15") == []
    assert _claim(client, {providers["b"]: {"VCPU": 6}}).status_code == 204
    assert _names(client, "1.4", resources="VCPU:4") == ["a"]


def test_required_forbidden_and_any_of(client: PlacementClient, providers: dict[str, str]) -> None:
    assert _names(client, "1.18", required="HW_CPU_X86_AVX2") == ["a", "b"]
    assert _names(client, "1.18", required="HW_CPU_X86_AVX2,CUSTOM_GOLD") == ["a"]
    assert _names(client, "1.22", required="!CUSTOM_GOLD") == ["b", "c"]
    assert _names(client, "1.39", required="in:CUSTOM_GOLD,HW_CPU_X86_SSE") == ["a"]
    # Before 1.39 only the last "required" counts; from 1.39 all of them.
    assert _names(client, "1.38", required=["CUSTOM_GOLD", "!CUSTOM_GOLD"]) == ["b", "c"]
    assert _names(client, "1.39", required=["HW_CPU_X86_AVX2", "!CUSTOM_GOLD"]) == ["b"]


def test_member_of(client: PlacementClient, providers: dict[str, str]) -> None:
    assert _names(client, "1.3", member_of=AGG_B) == ["b"]
    assert _names(client, "1.3", member_of=f"in:{AGG_A},{AGG_B}") == ["a", "b"]
    assert _names(client, "1.24", member_of=[AGG_A, AGG_B]) == ["b"]
    assert _names(client, "1.32", member_of=f"!{AGG_B}") == ["a", "c"]
    assert _names(client, "1.3", member_of="00000000-0000-4000-8000-000000000000") == []


def test_filters_combine_with_name_and_in_tree(
    client: PlacementClient, providers: dict[str, str]
) -> None:
    assert _names(client, "1.18", required="HW_CPU_X86_AVX2", name="b") == ["b"]
    assert _names(client, "1.18", required="HW_CPU_X86_AVX2", in_tree=providers["a"]) == ["a"]


@pytest.mark.parametrize(
    ("version", "query", "message"),
    [
        (
            "1.4",
            {"resources": "NOPE:1"},
            "Invalid resource class in resources parameter: No such resource class NOPE.",
        ),
        (
            "1.18",
            {"required": "CUSTOM_NOPE"},
            'Invalid trait(s) in "required" parameter: No such trait(s): CUSTOM_NOPE.',
        ),
        ("1.3", {"resources": "VCPU:1"}, "'resources' was unexpected"),
        ("1.17", {"required": "CUSTOM_GOLD"}, "'required' was unexpected"),
        (
            "1.18",
            {"required": "!CUSTOM_GOLD"},
            "Expected 'required' parameter value of the form: HW_CPU_X86_VMX,CUSTOM_MAGIC.",
        ),
        ("1.23", {"member_of": [AGG_A, AGG_B]}, "Multiple member_of parameters are not supported"),
        ("1.3", {"member_of": "nope"}, "Expected 'member_of' parameter to contain valid UUID(s)."),
        ("1.4", {"resources": "VCPU"}, "Badly formed resources parameter."),
    ],
)
def test_bad_filters(
    client: PlacementClient,
    providers: dict[str, str],
    version: str,
    query: dict[str, Any],
    message: str,
) -> None:
    resp = client.get("/resource_providers", params=query, microversion=version)
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["errors"][0]["detail"]
