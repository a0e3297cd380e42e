"""Side by side with the real nova-scheduler 34: one fleet (Nova's databases made by
nova-manage and filled by Nova's objects, allotment's placement with a provider per
compute node), one configuration (``host_subset_size = 1``, Nova's default filters plus
AggregateInstanceExtraSpecsFilter, default weighers), and per deterministic scenario the
same ``select_destinations`` from Nova's own SchedulerAPI to both schedulers; the hosts
they choose (and the alternates) must be the same, or both must answer NoValidHost.

Each scheduler has a RabbitMQ vhost of its own, so both run for the whole module and
neither consumes the other's ``scheduler`` topic. Each plays every scenario from the
same fleet (``drivers/scenarios.py``: the scenario's allocations deleted and the compute
nodes saved after it); the free RAM and vCPUs differ per host, so no two weights tie.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.fleet import HEADERS, SCHEDULER
from tests.integration.nova.conftest import NovaDriver, context, rabbit_vhost
from tests.integration.nova.realsched import allotment_toml, nova_scheduler
from tests.integration.nova.test_novadb import make_nova_databases

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

# One configuration for both: Nova's options by their Nova names and sections.
OPTIONS: dict[str, dict[str, object]] = {
    "filter_scheduler": {
        "host_subset_size": 1,
        "enabled_filters": [
            "ComputeFilter",
            "ComputeCapabilitiesFilter",
            "ImagePropertiesFilter",
            "ServerGroupAntiAffinityFilter",
            "ServerGroupAffinityFilter",
            "AggregateInstanceExtraSpecsFilter",
        ],
    },
}
# Nothing here heartbeats as a compute does: the services' rows keep their creation time.
SERVICE_DOWN_TIME = 3600

# host -> (cell, vCPUs, RAM MB): free RAM and vCPUs distinct per host, in the same order.
HOSTS = {
    "n1": ("cell1", 16, 16384),
    "n2": ("cell1", 13, 14848),
    "n3": ("cell1", 11, 13312),
    "n4": ("cell1", 9, 11264),
    "n5": ("cell2", 6, 9216),
    "n6": ("cell2", 4, 7168),
}
CPU_RATIO = 4.0
DISK_GB = 200
# A Nova 34 compute marks its root provider OWNER_NOVA; nova-scheduler requires it once
# every compute service is version 73 or later (these are 74). n6's provider is not
# marked (a provider Nova does not manage, on a node in Nova's databases).
TRAITS = {name: ["OWNER_NOVA"] for name in HOSTS if name != "n6"} | {
    "n4": ["OWNER_NOVA", "CUSTOM_FAST"],
    "n5": ["OWNER_NOVA", "CUSTOM_FAST"],
}
# Nova aggregates (and their placement twins, as nova-api makes them): name -> hosts, metadata
AGGREGATES = {
    "az1": (["n2", "n4"], {"availability_zone": "az1"}),
    "ssd": (["n3", "n5"], {"ssd": "true"}),
}


def flavor(vcpus: int = 2, memory_mb: int = 4096, **extra_specs: str) -> dict[str, Any]:
    return {
        "$obj": "Flavor",
        "name": f"f{vcpus}-{memory_mb}",
        "flavorid": f"{vcpus}-{memory_mb}",
        "vcpus": vcpus,
        "memory_mb": memory_mb,
        "root_gb": 10,
        "ephemeral_gb": 0,
        "swap": 0,
        "extra_specs": extra_specs,
    }


def group(policy: str, hosts: list[str]) -> dict[str, Any]:
    return {
        "$obj": "InstanceGroup",
        "uuid": str(uuid.uuid4()),
        "name": f"{policy}-group",
        "policy": policy,
        "policies": [policy],
        "rules": {},
        "hosts": hosts,
        "members": [str(uuid.uuid4()) for _ in hosts],
        "project_id": "p1",
        "user_id": "u1",
    }


@dataclass(frozen=True)
class Scenario:
    name: str
    count: int = 1
    flavor: dict[str, Any] = field(default_factory=flavor)
    fields: dict[str, Any] = field(default_factory=dict)

    def call(self) -> dict[str, Any]:
        """The same ``select_destinations`` for both schedulers (instance uuids too: the
        allocations are deleted between them)."""
        instances = [str(uuid.uuid4()) for _ in range(self.count)]
        fields = dict(self.fields)
        if "instance_group" in fields:
            # nova-api makes the new instances members before it asks the scheduler.
            made = fields["instance_group"]
            fields["instance_group"] = {**made, "members": [*made["members"], *instances]}
        return {
            "method": "select_destinations",
            "context": context(),
            # Every field as nova-api's RequestSpec.from_components sets it for a boot.
            "spec": {
                "$obj": "RequestSpec",
                "project_id": "p1",
                "user_id": "u1",
                "instance_uuid": instances[0],
                "flavor": self.flavor,
                "num_instances": self.count,
                "image": {"$obj": "ImageMeta", "properties": {}},
                "numa_topology": None,
                "pci_requests": {"$obj": "InstancePCIRequests", "requests": []},
                "availability_zone": None,
                "ignore_hosts": None,
                "force_hosts": None,
                "force_nodes": None,
                "requested_destination": None,
                "retry": None,
                "limits": {
                    "$obj": "SchedulerLimits",
                    "numa_topology": None,
                    "vcpu": None,
                    "disk_gb": None,
                    "memory_mb": None,
                },
                "instance_group": None,
                "scheduler_hints": {},
                "security_groups": {"$obj": "SecurityGroupList", "objects": []},
                "is_bfv": False,
                "requested_resources": [],
                "request_level_params": {"$obj": "RequestLevelParams"},
                **fields,
            },
            "instance_uuids": instances,
            "return_objects": True,
            "return_alternates": True,
        }


SCENARIOS = [
    Scenario("boot one"),
    Scenario("boot three at once", count=3),
    Scenario("availability zone", fields={"availability_zone": "az1"}),
    Scenario("required trait from the flavor", flavor=flavor(**{"trait:CUSTOM_FAST": "required"})),
    Scenario(
        "aggregate metadata from the flavor",
        flavor=flavor(**{"aggregate_instance_extra_specs:ssd": "true"}),
    ),
    Scenario("anti-affinity group", fields={"instance_group": group("anti-affinity", ["n1"])}),
    Scenario(
        "anti-affinity group, three at once",
        count=3,
        fields={"instance_group": group("anti-affinity", [])},
    ),
    Scenario("affinity group", fields={"instance_group": group("affinity", ["n3"])}),
    Scenario("forced host", fields={"force_hosts": ["n4"]}),
    Scenario(
        "requested destination",
        fields={"requested_destination": {"$obj": "Destination", "host": "n5"}},
    ),
    Scenario("ignore hosts", fields={"ignore_hosts": ["n1", "n2"]}),
    Scenario("no valid host: larger than any host", flavor=flavor(memory_mb=65536)),
    Scenario(
        "no valid host: the destination's provider is not OWNER_NOVA",
        fields={"requested_destination": {"$obj": "Destination", "host": "n6"}},
    ),
    Scenario(
        "no valid host: zone and trait exclude each other",
        flavor=flavor(
            **{"trait:CUSTOM_FAST": "required", "aggregate_instance_extra_specs:ssd": "true"}
        ),
        fields={"availability_zone": "az1"},
    ),
    Scenario(
        "no valid host: three apart in a zone of two",
        count=3,
        fields={"availability_zone": "az1", "instance_group": group("anti-affinity", [])},
    ),
]


def outcome(answer: dict[str, Any]) -> Any:
    """What is compared: per instance the chosen host and its alternates, or the error's
    Nova class (the messages differ: allotment's says why)."""
    if "error" in answer:
        error = answer["error"]
        return "NoValidHost" if "NoValidHost" in error["nova_class"] else error["class"]
    return [[s["fields"]["service_host"] for s in choices] for choices in answer["result"]]


def _providers(http: httpx.Client, nodes: dict[str, str], aggregates: dict[str, str]) -> None:
    """Each compute node's provider as Nova's compute makes it (uuid = node uuid, the
    node's inventory), its traits, and the aggregates as nova-api mirrors them."""

    def put(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = http.put(path, json=body, headers=HEADERS)
        assert response.status_code == 200, (path, response.text)
        reply: dict[str, Any] = response.json()
        return reply

    for trait in {t for traits in TRAITS.values() for t in traits if t.startswith("CUSTOM_")}:
        assert http.put(f"/traits/{trait}", headers=HEADERS).status_code in (201, 204)
    for name, (_, vcpus, ram) in HOSTS.items():
        rp = nodes[name]
        response = http.post(
            "/resource_providers", json={"name": name, "uuid": rp}, headers=HEADERS
        )
        assert response.status_code == 200, response.text
        generation = put(
            f"/resource_providers/{rp}/inventories",
            {
                "resource_provider_generation": 0,
                "inventories": {
                    "VCPU": {"total": vcpus, "allocation_ratio": CPU_RATIO},
                    "MEMORY_MB": {"total": ram},
                    "DISK_GB": {"total": DISK_GB},
                },
            },
        )["resource_provider_generation"]
        if name in TRAITS:
            generation = put(
                f"/resource_providers/{rp}/traits",
                {"resource_provider_generation": generation, "traits": TRAITS[name]},
            )["resource_provider_generation"]
        mine = [aggregates[agg] for agg, (members, _) in AGGREGATES.items() if name in members]
        if mine:
            put(
                f"/resource_providers/{rp}/aggregates",
                {"resource_provider_generation": generation, "aggregates": mine},
            )


def _wait_for_hosts(http: httpx.Client, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        response = http.get(f"{SCHEDULER}/hosts", headers=HEADERS)
        assert response.status_code == 200, response.text
        if {h["host"] for h in response.json()["hosts"]} == set(HOSTS):
            return
        assert time.monotonic() < deadline, f"allotment did not read the hosts: {response.text}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def answers(
    tmp_path_factory: pytest.TempPathFactory, nova_python: Path
) -> Iterator[dict[str, tuple[Any, Any]]]:
    """Scenario name -> (nova-scheduler's answer, allotment's answer)."""
    folder = tmp_path_factory.mktemp("side-by-side")
    with rabbit_vhost("hn-allotment-") as ours, rabbit_vhost("hn-nova-") as theirs:
        nova, drop = make_nova_databases(nova_python, ours, "hn_")
        try:
            steps: list[dict[str, Any]] = []
            nodes = {name: str(uuid.uuid4()) for name in HOSTS}
            for name, (cell, vcpus, ram) in HOSTS.items():
                node = {
                    "uuid": nodes[name],
                    "hypervisor_hostname": name,
                    "vcpus": vcpus,
                    "memory_mb": ram,
                    "local_gb": DISK_GB,
                    "cpu_allocation_ratio": CPU_RATIO,
                }
                steps.append({"do": "host", "cell": cell, "host": name, "nodes": [node]})
            for agg, (members, metadata) in AGGREGATES.items():
                steps.append(
                    {"do": "aggregate", "name": agg, "hosts": members, "metadata": metadata}
                )
            made = nova.request(*steps)
            aggregates = dict(zip(AGGREGATES, made[len(HOSTS) :], strict=True))

            nova_conf = folder / "nova.conf"
            nova_conf.write_text(
                f"[DEFAULT]\ntransport_url = {ours}\nhost = hn-allotment\n"
                f"[api_database]\nconnection = {nova.urls['api']}\n"
                f"[database]\nconnection = {nova.urls['cell1']}\n"
            )
            settings = folder / "allotment.toml"
            settings.write_text(
                allotment_toml({**OPTIONS, "scheduler": {"service_down_time": SERVICE_DOWN_TIME}})
            )
            server = LiveServer(
                f"sqlite:///{folder / 'allotment.sqlite'}",
                folder / "state",
                "--config",
                str(settings),
                "--nova-config",
                str(nova_conf),
                wait=False,
            )
            try:
                server.wait_ready(timeout=120)
                with httpx.Client(base_url=server.url, timeout=30) as http:
                    _providers(http, nodes, aggregates)
                    _wait_for_hosts(http)
                with nova_scheduler(
                    nova_python,
                    folder / "nova-scheduler",
                    transport_url=theirs,
                    api_database=nova.urls["api"],
                    cell_database=nova.urls["cell1"],
                    placement_url=server.url,
                    options={**OPTIONS, "DEFAULT": {"service_down_time": SERVICE_DOWN_TIME}},
                ):
                    calls = [scenario.call() for scenario in SCENARIOS]
                    play = NovaDriver(nova_python, "scenarios.py")
                    found = {}
                    for url in (theirs, ours):
                        found[url] = play.run(
                            {
                                "transport_url": url,
                                "placement_url": server.url,
                                "api": nova.urls["api"],
                                "cells": {"cell1": nova.urls["cell1"], "cell2": nova.urls["cell2"]},
                                "scenarios": calls,
                            },
                            timeout=600,
                        )
                yield {
                    scenario.name: (real, mine)
                    for scenario, real, mine in zip(
                        SCENARIOS, found[theirs], found[ours], strict=True
                    )
                }
            finally:
                server.stop()
        finally:
            drop()


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_allotment_chooses_what_nova_scheduler_chooses(
    answers: dict[str, tuple[Any, Any]], scenario: str
) -> None:
    real, mine = answers[scenario]
    nova, allotment = outcome(real), outcome(mine)
    if scenario.startswith("no valid host"):
        assert nova == "NoValidHost", real
    else:
        assert isinstance(nova, list), real
    assert allotment == nova, (real, mine)
