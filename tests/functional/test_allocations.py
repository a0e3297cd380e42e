"""Allocations over HTTP: claims, consumer generations, capacity rules, moves, deletes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from allotment.app import Services
from allotment.placement.store.unit_of_work import WriteTxn
from tests.conftest import PlacementClient

PROJECT = "6a1f4d0e-2b7a-4d65-9d0b-8f1f2e3a4b5c"
USER = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
INVENTORY = {
    "VCPU": {"total": 8, "max_unit": 8},
    "MEMORY_MB": {"total": 4096, "reserved": 512, "step_size": 256, "max_unit": 4096},
    "DISK_GB": {"total": 100, "min_unit": 10, "max_unit": 50},
}


def provider(client: PlacementClient, inventories: dict[str, Any] | None = None) -> str:
    rp = client.create_provider()
    resp = client.put(
        f"/resource_providers/{rp['uuid']}/inventories",
        {"resource_provider_generation": 0, "inventories": inventories or INVENTORY},
    )
    assert resp.status_code == 200, resp.text
    return str(rp["uuid"])


def claim(
    client: PlacementClient,
    consumer: str,
    allocations: dict[str, dict[str, int]],
    generation: int | None = None,
    consumer_type: str = "INSTANCE",
    **extra: Any,
) -> Any:
    body = {
        "allocations": {rp: {"resources": res} for rp, res in allocations.items()},
        "project_id": PROJECT,
        "user_id": USER,
        "consumer_generation": generation,
        "consumer_type": consumer_type,
        **extra,
    }
    return client.put(f"/allocations/{consumer}", body)


def generation_of(client: PlacementClient, rp: str) -> int:
    return int(client.get(f"/resource_providers/{rp}").json()["generation"])


def usages(client: PlacementClient, rp: str) -> dict[str, int]:
    return dict(client.get(f"/resource_providers/{rp}/usages").json()["usages"])


def error(resp: Any) -> tuple[str, str]:
    err = resp.json()["errors"][0]
    return err["code"], err["detail"]


def test_claim_read_back_and_generations(client: PlacementClient) -> None:
    rp = provider(client)
    consumer = str(uuid.uuid4())
    resp = claim(client, consumer, {rp: {"VCPU": 2, "MEMORY_MB": 512}})
    assert resp.status_code == 204, resp.text
    assert "last-modified" not in resp.headers
    body = client.get(f"/allocations/{consumer}").json()
    assert body == {
        "allocations": {rp: {"generation": 2, "resources": {"VCPU": 2, "MEMORY_MB": 512}}},
        "project_id": PROJECT,
        "user_id": USER,
        "consumer_generation": 1,
        "consumer_type": "INSTANCE",
    }
    assert generation_of(client, rp) == 2
    assert usages(client, rp) == {"VCPU": 2, "MEMORY_MB": 512, "DISK_GB": 0}
    by_rp = client.get(f"/resource_providers/{rp}/allocations").json()
    assert by_rp == {
        "allocations": {
            consumer: {"resources": {"VCPU": 2, "MEMORY_MB": 512}, "consumer_generation": 1}
        },
        "resource_provider_generation": 2,
    }
    # Older microversions show less.
    old = client.get(f"/allocations/{consumer}", microversion="1.11").json()
    assert set(old) == {"allocations"}
    assert "consumer_type" not in client.get(f"/allocations/{consumer}", microversion="1.37").json()


def test_consumer_generation_rules(client: PlacementClient) -> None:
    rp = provider(client)
    consumer = str(uuid.uuid4())
    resp = claim(client, consumer, {rp: {"VCPU": 1}}, generation=3)
    assert resp.status_code == 409
    code, detail = error(resp)
    assert code == "placement.concurrent_update"
    assert "consumer generation conflict - expected null but got 3" in detail
    assert claim(client, consumer, {rp: {"VCPU": 1}}).status_code == 204
    resp = claim(client, consumer, {rp: {"VCPU": 2}})
    assert resp.status_code == 409 and "expected 1 but got None" in error(resp)[1]
    assert claim(client, consumer, {rp: {"VCPU": 2}}, generation=1).status_code == 204
    assert usages(client, rp)["VCPU"] == 2
    # Emptying the allocations deletes the consumer: the next write starts from null.
    assert claim(client, consumer, {}, generation=2).status_code == 204
    assert client.get(f"/allocations/{consumer}").json() == {"allocations": {}}
    assert claim(client, consumer, {rp: {"VCPU": 1}}, generation=3).status_code == 409
    assert claim(client, consumer, {rp: {"VCPU": 1}}).status_code == 204


def test_new_consumer_with_no_allocations_is_kept(client: PlacementClient) -> None:
    rp = provider(client)
    consumer = str(uuid.uuid4())
    assert claim(client, consumer, {}).status_code == 204
    assert client.get(f"/allocations/{consumer}").json() == {"allocations": {}}
    resp = claim(client, consumer, {rp: {"VCPU": 1}})
    assert resp.status_code == 409 and "expected 0 but got None" in error(resp)[1]
    assert claim(client, consumer, {rp: {"VCPU": 1}}, generation=0).status_code == 204
    assert client.get(f"/allocations/{consumer}").json()["consumer_generation"] == 1


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"VCPU": 9}, "The requested amount would violate inventory constraints"),
        ({"DISK_GB": 5}, "The requested amount would violate inventory constraints"),
        ({"MEMORY_MB": 300}, "The requested amount would violate inventory constraints"),
        ({"VGPU": 1}, "Inventory for 'VGPU' on resource provider"),
    ],
)
def test_constraints_are_409_and_change_nothing(
    client: PlacementClient, resources: dict[str, int], message: str
) -> None:
    rp = provider(client)
    consumer = str(uuid.uuid4())
    resp = claim(client, consumer, {rp: resources})
    assert resp.status_code == 409, resp.text
    code, detail = error(resp)
    assert code == "placement.undefined_code"
    assert "Unable to allocate inventory: " in detail and message in detail
    assert generation_of(client, rp) == 1
    assert client.get(f"/allocations/{consumer}").json() == {"allocations": {}}
    # The failed write left no consumer behind: a new claim starts from null.
    assert claim(client, consumer, {rp: {"VCPU": 1}}).status_code == 204


def test_capacity_is_total_minus_reserved_times_ratio(client: PlacementClient) -> None:
    rp = provider(client, {"VCPU": {"total": 4, "reserved": 1, "allocation_ratio": 2.0}})
    assert claim(client, str(uuid.uuid4()), {rp: {"VCPU": 4}}).status_code == 204
    assert claim(client, str(uuid.uuid4()), {rp: {"VCPU": 2}}).status_code == 204
    resp = claim(client, str(uuid.uuid4()), {rp: {"VCPU": 1}})
    assert resp.status_code == 409
    assert "The requested amount would exceed the capacity" in error(resp)[1]
    assert usages(client, rp) == {"VCPU": 6}


def test_replacing_own_allocation_does_not_count_it_twice(client: PlacementClient) -> None:
    rp = provider(client, {"VCPU": {"total": 4}})
    consumer = str(uuid.uuid4())
    assert claim(client, consumer, {rp: {"VCPU": 3}}).status_code == 204
    assert claim(client, consumer, {rp: {"VCPU": 4}}, generation=1).status_code == 204
    assert usages(client, rp) == {"VCPU": 4}


def test_over_capacity_provider_accepts_a_shrinking_claim(client: PlacementClient) -> None:
    rp = provider(client, {"VCPU": {"total": 8}})
    consumer = str(uuid.uuid4())
    assert claim(client, consumer, {rp: {"VCPU": 6}}).status_code == 204
    path = f"/resource_providers/{rp}/inventories"
    gen = generation_of(client, rp)
    body = {"resource_provider_generation": gen, "inventories": {"VCPU": {"total": 4}}}
    assert client.put(path, body).status_code == 200
    assert claim(client, consumer, {rp: {"VCPU": 5}}, generation=1).status_code == 204
    resp = claim(client, consumer, {rp: {"VCPU": 6}}, generation=2)
    assert resp.status_code == 409


def test_unknown_provider_and_class_are_400(client: PlacementClient) -> None:
    rp = provider(client)
    consumer = str(uuid.uuid4())
    missing = str(uuid.uuid4())
    resp = claim(client, consumer, {missing: {"VCPU": 1}})
    assert resp.status_code == 400
    assert f"Allocation for resource provider '{missing}' that does not exist." in error(resp)[1]
    resp = claim(client, consumer, {rp: {"NOPE": 1}})
    assert resp.status_code == 400
    assert (
        f"Unable to allocate inventory for consumer {consumer}: No such resource class NOPE."
        in error(resp)[1]
    )
    # Neither failure left a consumer record behind.
    assert claim(client, consumer, {rp: {"VCPU": 1}}).status_code == 204


def test_move_between_providers(client: PlacementClient) -> None:
    source, target = provider(client), provider(client)
    consumer = str(uuid.uuid4())
    assert claim(client, consumer, {source: {"VCPU": 2}}).status_code == 204
    assert claim(client, consumer, {target: {"VCPU": 2}}, generation=1).status_code == 204
    assert usages(client, source)["VCPU"] == 0
    assert usages(client, target)["VCPU"] == 2
    # As upstream: only providers named in the new allocations change generation.
    assert generation_of(client, source) == 2
    assert generation_of(client, target) == 2


def test_delete_allocations(client: PlacementClient) -> None:
    rp = provider(client)
    consumer = str(uuid.uuid4())
    assert claim(client, consumer, {rp: {"VCPU": 2}}).status_code == 204
    assert client.delete(f"/allocations/{consumer}").status_code == 204
    assert usages(client, rp)["VCPU"] == 0
    assert generation_of(client, rp) == 2  # deleting does not bump (as upstream)
    resp = client.delete(f"/allocations/{consumer}")
    assert resp.status_code == 404
    assert f"No allocations for consumer '{consumer}'" in error(resp)[1]
    assert claim(client, consumer, {rp: {"VCPU": 1}}).status_code == 204


def test_list_form_and_incomplete_consumer_before_1_8(client: PlacementClient) -> None:
    rp = provider(client)
    consumer = str(uuid.uuid4())
    body = {"allocations": [{"resource_provider": {"uuid": rp}, "resources": {"VCPU": 1}}]}
    assert client.put(f"/allocations/{consumer}", body, microversion="1.0").status_code == 204
    got = client.get(f"/allocations/{consumer}").json()
    assert got["project_id"] == got["user_id"] == "00000000-0000-0000-0000-000000000000"
    assert got["consumer_type"] == "unknown"
    # A dashless uuid names the same consumer.
    resp = client.put(
        f"/allocations/{consumer.replace('-', '')}",
        {
            "allocations": {rp: {"resources": {"VCPU": 2}}},
            "project_id": PROJECT,
            "user_id": USER,
            "consumer_generation": 1,
        },
        microversion="1.28",
    )
    assert resp.status_code == 204, resp.text
    assert client.get(f"/allocations/{consumer}").json()["project_id"] == PROJECT
    bad = client.put("/allocations/not-a-uuid", body, microversion="1.0")
    assert bad.status_code == 400 and "Malformed consumer_uuid: not-a-uuid" in bad.text


def test_post_moves_allocations_between_consumers_atomically(client: PlacementClient) -> None:
    rp = provider(client, {"VCPU": {"total": 4}})
    migration, instance = str(uuid.uuid4()), str(uuid.uuid4())
    assert claim(client, instance, {rp: {"VCPU": 4}}).status_code == 204
    owner = {"project_id": PROJECT, "user_id": USER, "consumer_type": "MIGRATION"}
    body = {
        migration: {
            "allocations": {rp: {"resources": {"VCPU": 4}}},
            "consumer_generation": None,
            **owner,
        },
        instance: {"allocations": {}, "consumer_generation": 1, **owner},
    }
    resp = client.post("/allocations", body)
    assert resp.status_code == 204, resp.text
    assert client.get(f"/allocations/{instance}").json() == {"allocations": {}}
    assert client.get(f"/allocations/{migration}").json()["consumer_type"] == "MIGRATION"
    assert usages(client, rp) == {"VCPU": 4}
    # All or nothing: one bad consumer fails the whole request.
    other = str(uuid.uuid4())
    body = {
        other: {
            "allocations": {rp: {"resources": {"VCPU": 1}}},
            "consumer_generation": None,
            **owner,
        },
        migration: {"allocations": {}, "consumer_generation": 7, **owner},
    }
    resp = client.post("/allocations", body)
    assert resp.status_code == 409
    assert client.get(f"/allocations/{other}").json() == {"allocations": {}}
    resp = client.post("/allocations", body, microversion="1.12")
    assert resp.status_code == 404
    assert resp.json()["errors"][0]["detail"] == "The resource could not be found.\n\n   "


def test_usages_by_project_user_and_type(client: PlacementClient) -> None:
    rp = provider(client)
    assert claim(client, str(uuid.uuid4()), {rp: {"VCPU": 1, "MEMORY_MB": 512}}).status_code == 204
    assert (
        claim(client, str(uuid.uuid4()), {rp: {"VCPU": 2}}, consumer_type="MIGRATION").status_code
        == 204
    )
    body = {"allocations": [{"resource_provider": {"uuid": rp}, "resources": {"VCPU": 4}}]}
    assert client.put(f"/allocations/{uuid.uuid4()}", body, microversion="1.0").status_code == 204

    def totals(query: str, mv: str = "1.38") -> Any:
        resp = client.get(f"/usages?{query}", microversion=mv)
        assert resp.status_code == 200, resp.text
        return resp.json()["usages"]

    assert totals(f"project_id={PROJECT}", "1.9") == {"VCPU": 3, "MEMORY_MB": 512}
    assert totals(f"project_id={PROJECT}&user_id=nobody", "1.9") == {}
    assert totals(f"project_id={PROJECT}") == {
        "INSTANCE": {"VCPU": 1, "MEMORY_MB": 512, "consumer_count": 1},
        "MIGRATION": {"VCPU": 2, "consumer_count": 1},
    }
    assert totals(f"project_id={PROJECT}&consumer_type=all") == {
        "all": {"VCPU": 3, "MEMORY_MB": 512, "consumer_count": 2}
    }
    assert totals(f"project_id={PROJECT}&consumer_type=MIGRATION") == {
        "MIGRATION": {"VCPU": 2, "consumer_count": 1}
    }
    assert totals(f"project_id={PROJECT}&consumer_type=NEVER_SEEN") == {}
    incomplete = "00000000-0000-0000-0000-000000000000"
    assert totals(f"project_id={incomplete}&consumer_type=unknown") == {
        "unknown": {"VCPU": 4, "consumer_count": 1}
    }
    assert client.get(f"/usages?project_id={PROJECT}", microversion="1.8").status_code == 404
    resp = client.get("/usages", microversion="1.9")
    assert resp.status_code == 400 and "Invalid query string parameters" in resp.text


def test_project_reader_sees_only_own_usages(client: PlacementClient) -> None:
    headers = {"x-auth-token": f"reader:{PROJECT}", "x-roles": "reader"}
    resp = client.get(f"/usages?project_id={PROJECT}", headers=headers)
    assert resp.status_code == 200
    resp = client.get("/usages?project_id=someone-else", headers=headers)
    assert resp.status_code == 403


def test_reshape_moves_inventory_and_allocations_to_a_child(client: PlacementClient) -> None:
    root = provider(client, {"VCPU": {"total": 8}, "VGPU": {"total": 4}})
    child = client.create_provider(parent_provider_uuid=root)["uuid"]
    consumer = str(uuid.uuid4())
    assert claim(client, consumer, {root: {"VCPU": 1, "VGPU": 2}}).status_code == 204
    body = {
        "inventories": {
            root: {"resource_provider_generation": 2, "inventories": {"VCPU": {"total": 8}}},
            child: {"resource_provider_generation": 0, "inventories": {"VGPU": {"total": 4}}},
        },
        "allocations": {
            consumer: {
                "allocations": {
                    root: {"resources": {"VCPU": 1}},
                    child: {"resources": {"VGPU": 2}},
                },
                "project_id": PROJECT,
                "user_id": USER,
                "consumer_generation": 1,
                "consumer_type": "INSTANCE",
            }
        },
    }
    # Upstream's default: only a service may reshape, not an admin.
    assert client.post("/reshaper", body).status_code == 403
    resp = client.post("/reshaper", body, headers={"x-roles": "service"})
    assert resp.status_code == 204, resp.text
    assert usages(client, root) == {"VCPU": 1}
    assert usages(client, child) == {"VGPU": 2}
    assert generation_of(client, root) == 5  # interim inventory, allocations, final
    assert generation_of(client, child) == 3
    # Stale generation: refused before anything changes.
    resp = client.post("/reshaper", body, headers={"x-roles": "service"})
    assert resp.status_code == 409
    assert "resource provider generation conflict for provider" in error(resp)[1]


def test_reshape_refuses_to_drop_inventory_still_allocated(client: PlacementClient) -> None:
    rp = provider(client, {"VCPU": {"total": 8}, "VGPU": {"total": 4}})
    assert claim(client, str(uuid.uuid4()), {rp: {"VGPU": 1}}).status_code == 204
    body = {
        "inventories": {
            rp: {"resource_provider_generation": 2, "inventories": {"VCPU": {"total": 8}}}
        },
        "allocations": {},
    }
    resp = client.post("/reshaper", body, headers={"x-roles": "service"})
    assert resp.status_code == 409
    code, detail = error(resp)
    assert code == "placement.inventory.inuse" and "update conflict: " in detail
    assert usages(client, rp) == {"VCPU": 0, "VGPU": 1}
    assert generation_of(client, rp) == 2


def test_writes_tell_listeners_the_exact_usage_deltas(
    client: PlacementClient, services: Services
) -> None:
    """The capacity index applies these without reading SQL again."""
    seen: list[WriteTxn] = []
    services.placement.add_listener(seen.append)
    source, target = provider(client), provider(client)
    source_id = services.placement.get_provider(source).id
    target_id = services.placement.get_provider(target).id
    vcpu = services.placement.catalog.resource_classes.id_of("VCPU")
    disk = services.placement.catalog.resource_classes.id_of("DISK_GB")
    consumer = str(uuid.uuid4())
    seen.clear()
    assert claim(client, consumer, {source: {"VCPU": 2, "DISK_GB": 10}}).status_code == 204
    assert seen[-1].usage_deltas() == {(source_id, vcpu): 2, (source_id, disk): 10}
    assert seen[-1].touched == {source_id}
    assert claim(client, consumer, {target: {"VCPU": 1}}, generation=1).status_code == 204
    assert seen[-1].usage_deltas() == {
        (source_id, vcpu): -2,
        (source_id, disk): -10,
        (target_id, vcpu): 1,
    }
    assert seen[-1].touched == {source_id, target_id}
    assert client.delete(f"/allocations/{consumer}").status_code == 204
    assert seen[-1].usage_deltas() == {(target_id, vcpu): -1}
    failed = len(seen)
    assert claim(client, consumer, {target: {"VCPU": 99}}).status_code == 409
    assert len(seen) == failed  # nothing committed, nothing announced
