"""The virtual cloud: compute nodes as placement provider trees (root, NUMA and GPU
children), their inventories, traits and aggregates, host reports and host aggregates,
and the instances already running — written straight into the store in bulk (10,000
hosts through the HTTP API would measure the API, not the policy)."""

from __future__ import annotations

import random
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from allotment.app import Services
from allotment.db import bulk
from allotment.db.database import utcnow
from allotment.placement.store.tables import (
    allocations,
    consumers,
    inventories,
    placement_aggregates,
    resource_provider_aggregates,
    resource_provider_traits,
    resource_providers,
)
from allotment.scheduler import store as host_store
from allotment.scheduler.records import Aggregate, HostRecord, HostReport, InstanceInfo
from allotment.sim.scenario import FlavorSpec, HostShape, Policy, Scenario

PROJECT = "5e1f0c0a7d6b4c3e9a8b7c6d5e4f3a2b"
USER = "9c8b7a6d5e4f43a2b1c0d9e8f7a6b5c4"
BASE_RCS = ["VCPU", "MEMORY_MB", "DISK_GB"]
# Nova's defaults for a host that does not set them.
DEFAULT_RATIOS = {"VCPU": 4.0, "MEMORY_MB": 1.0, "DISK_GB": 1.0}


def sim_uuid(rng: random.Random) -> str:
    return str(uuidlib.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class Instance:
    """An instance alive in the simulation and what it holds in placement."""

    consumer: str
    host: int  # index into Cloud.hosts
    flavor: int
    group: int
    allocations: dict[int, dict[int, int]]  # provider index -> rc column -> amount


@dataclass
class Cloud:
    """The fleet as the simulation accounts for it: providers in rows, resource classes
    in columns, capacity = (total - reserved) * allocation_ratio."""

    rcs: list[str]
    provider_uuid: list[str]
    provider_root: npt.NDArray[np.int64]  # host index of each provider
    capacity: npt.NDArray[np.float64]  # [providers, rcs]
    hosts: list[str]
    host_az: list[str]
    host_shape: list[int]
    zones: list[str]
    provider_index: dict[str, int] = field(default_factory=dict)
    existing: list[Instance] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.provider_index = {u: i for i, u in enumerate(self.provider_uuid)}
        self.host_index = {h: i for i, h in enumerate(self.hosts)}

    def host_capacity(self) -> npt.NDArray[np.float64]:
        return self.per_host(self.capacity)

    def per_host(self, per_provider: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        out = np.zeros((len(self.hosts), len(self.rcs)))
        np.add.at(out, self.provider_root, per_provider)
        return out


def resource_classes(scenario: Scenario) -> list[str]:
    found = list(BASE_RCS)
    for shape in scenario.hosts:
        if shape.gpus and shape.gpus.resource_class not in found:
            found.append(shape.gpus.resource_class)
    for flavor in scenario.flavor:
        for key in flavor.extra_specs:
            if key.startswith("resources") and ":" in key:
                rc = key.split(":", 1)[1]
                if rc not in found:
                    found.append(rc)
    return found


def flavor_demand(flavor: FlavorSpec) -> tuple[dict[str, int], list[dict[str, int]]]:
    """The unnumbered group's amounts and each numbered group's, from the flavor and its
    ``resources[N]:RC`` extra specs (as Nova turns them into placement groups)."""
    plain: dict[str, int] = {"VCPU": flavor.vcpus, "MEMORY_MB": flavor.memory_mb}
    if flavor.root_gb:
        plain["DISK_GB"] = flavor.root_gb
    numbered: dict[str, dict[str, int]] = {}
    for key, value in flavor.extra_specs.items():
        if not key.startswith("resources") or ":" not in key:
            continue
        prefix, rc = key.split(":", 1)
        suffix = prefix[len("resources") :]
        amount = int(value)
        if suffix:
            numbered.setdefault(suffix, {})[rc] = amount
        elif amount:
            plain[rc] = amount
        else:
            plain.pop(rc, None)
    return plain, list(numbered.values())


def _ratio(shape: HostShape, policy: Policy, rc: str) -> float:
    pick = {
        "VCPU": (policy.cpu_allocation_ratio, shape.cpu_allocation_ratio),
        "MEMORY_MB": (policy.ram_allocation_ratio, shape.ram_allocation_ratio),
        "DISK_GB": (policy.disk_allocation_ratio, shape.disk_allocation_ratio),
    }.get(rc)
    if pick is None:
        return 1.0
    for value in pick:
        if value is not None:
            return value
    return DEFAULT_RATIOS[rc]


def agg_uuid(scenario: str, name: str) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"allotment-sim:{scenario}:{name}"))


def build(services: Services, scenario: Scenario, policy: Policy, rng: random.Random) -> Cloud:
    """Write the scenario's cloud into ``services``' empty database; returns its accounting."""
    catalog = services.placement.catalog
    rcs = resource_classes(scenario)
    for rc in rcs:
        if rc.startswith("CUSTOM_"):
            catalog.resource_classes.ensure(rc)
    trait_names = {t for s in scenario.hosts for t in s.traits}
    trait_names |= {t for s in scenario.hosts if s.gpus for t in s.gpus.traits}
    custom = sorted(t for t in trait_names if t.startswith("CUSTOM_"))
    if custom:
        catalog.traits.sync(custom)
    rc_id = {rc: catalog.resource_classes.id_of(rc) for rc in rcs}
    trait_id = {t: catalog.traits.id_of(t) for t in trait_names}
    unknown = sorted(
        [t for t, i in trait_id.items() if i is None] + [r for r, i in rc_id.items() if i is None]
    )
    if unknown:
        from allotment.errors import ConfigError

        raise ConfigError(
            f"scenario names unknown traits or resource classes: {', '.join(unknown)}"
        )
    col = {rc: i for i, rc in enumerate(rcs)}
    now, clock = utcnow(), time.time()

    zones: list[str] = []
    for shape in scenario.hosts:
        for zone in shape.azs:
            if zone not in zones:
                zones.append(zone)
    agg_meta: dict[str, dict[str, str]] = {f"az-{z}": {"availability_zone": z} for z in zones}
    agg_meta.update({a.name: dict(a.metadata) for a in scenario.aggregate})
    agg_ids = {name: i for i, name in enumerate(agg_meta, start=1)}
    members: dict[str, set[str]] = {name: set() for name in agg_meta}

    providers: list[dict[str, Any]] = []
    invs: list[dict[str, Any]] = []
    traits: list[dict[str, Any]] = []
    rp_aggs: list[dict[str, Any]] = []
    records: list[HostRecord] = []
    provider_uuid: list[str] = []
    provider_root: list[int] = []
    capacity: list[list[float]] = []
    hosts: list[str] = []
    host_az: list[str] = []
    host_shape: list[int] = []
    default_az = services.settings.scheduler.default_availability_zone

    def provider(name: str, host: int, root_id: int | None, parent_id: int | None) -> int:
        pid = len(providers) + 1
        uuid = sim_uuid(rng)
        providers.append(
            {
                "id": pid,
                "uuid": uuid,
                "name": name,
                "generation": 1,
                "root_provider_id": root_id or pid,
                "parent_provider_id": parent_id,
                "created_at": now,
            }
        )
        provider_uuid.append(uuid)
        provider_root.append(host)
        capacity.append([0.0] * len(rcs))
        return pid

    def inventory(
        pid: int, rc: str, total: int, reserved: int, ratio: float, shape: HostShape
    ) -> None:
        invs.append(
            {
                "resource_provider_id": pid,
                "resource_class_id": rc_id[rc],
                "total": total,
                "reserved": reserved,
                "min_unit": 1,
                "max_unit": total,
                "step_size": 1,
                "allocation_ratio": ratio,
                "created_at": now,
            }
        )
        capacity[pid - 1][col[rc]] = float(int((total - reserved) * ratio))

    serial = 0
    for s_index, shape in enumerate(scenario.hosts):
        for k in range(shape.count):
            serial += 1
            h = len(hosts)
            name = f"{shape.name}-{k + 1:05d}"
            zone = shape.azs[k % len(shape.azs)] if shape.azs else default_az
            hosts.append(name)
            host_az.append(zone)
            host_shape.append(s_index)
            root = provider(name, h, None, None)
            vcpu_r = _ratio(shape, policy, "VCPU")
            ram_r = _ratio(shape, policy, "MEMORY_MB")
            if shape.numa_nodes:
                per_cpu = shape.vcpus // shape.numa_nodes
                per_mem = shape.memory_mb // shape.numa_nodes
                res_cpu = shape.reserved_host_cpus // shape.numa_nodes
                res_mem = shape.reserved_host_memory_mb // shape.numa_nodes
                for n in range(shape.numa_nodes):
                    child = provider(f"{name}_numa{n}", h, root, root)
                    inventory(child, "VCPU", per_cpu, res_cpu, vcpu_r, shape)
                    inventory(child, "MEMORY_MB", per_mem, res_mem, ram_r, shape)
            else:
                inventory(root, "VCPU", shape.vcpus, shape.reserved_host_cpus, vcpu_r, shape)
                inventory(
                    root, "MEMORY_MB", shape.memory_mb, shape.reserved_host_memory_mb, ram_r, shape
                )
            if shape.disk_gb:
                inventory(
                    root, "DISK_GB", shape.disk_gb, 0, _ratio(shape, policy, "DISK_GB"), shape
                )
            if shape.gpus:
                for g in range(shape.gpus.count):
                    child = provider(f"{name}_gpu{g}", h, root, root)
                    inventory(child, shape.gpus.resource_class, shape.gpus.units, 0, 1.0, shape)
                    traits.extend(
                        {"resource_provider_id": child, "trait_id": trait_id[t], "created_at": now}
                        for t in shape.gpus.traits
                    )
            traits.extend(
                {"resource_provider_id": root, "trait_id": trait_id[t], "created_at": now}
                for t in shape.traits
            )
            host_aggs = ([f"az-{zone}"] if shape.azs else []) + list(shape.aggregates)
            for agg in host_aggs:
                members[agg].add(name)
                rp_aggs.append(
                    {"resource_provider_id": root, "aggregate_id": agg_ids[agg], "created_at": now}
                )
            report = HostReport(
                compute_node_uuid=provider_uuid[root - 1],
                hypervisor_type="QEMU",
                hypervisor_version=8002000,
                host_ip=f"10.{serial >> 16 & 255}.{serial >> 8 & 255}.{serial & 255}",
                supported_instances=[("x86_64", "kvm", "hvm")],
                cpu_allocation_ratio=vcpu_r,
                ram_allocation_ratio=ram_r,
            )
            records.append(HostRecord(name, name, report, clock, clock))

    cloud = Cloud(
        rcs=rcs,
        provider_uuid=provider_uuid,
        provider_root=np.array(provider_root, dtype=np.int64),
        capacity=np.array(capacity, dtype=np.float64),
        hosts=hosts,
        host_az=host_az,
        host_shape=host_shape,
        zones=zones,
    )
    cons, allocs, infos = _existing_load(cloud, scenario, rng, rc_id, now)
    with services.db.write() as conn:  # one transaction, a few statements a table
        bulk.insert_rows(conn, resource_providers, providers)
        bulk.insert_rows(
            conn,
            placement_aggregates,
            [
                {"id": agg_ids[name], "uuid": agg_uuid(scenario.name, name), "created_at": now}
                for name in agg_meta
            ],
        )
        bulk.insert_rows(conn, inventories, invs)
        bulk.insert_rows(conn, resource_provider_traits, traits)
        bulk.insert_rows(conn, resource_provider_aggregates, rp_aggs)
        bulk.insert_rows(conn, consumers, cons)
        bulk.insert_rows(conn, allocations, allocs)
        host_store.insert_all(
            conn,
            records,
            [
                Aggregate(agg_uuid(scenario.name, name), name, metadata, frozenset(members[name]))
                for name, metadata in agg_meta.items()
            ],
            infos,
            now,
        )
    return cloud


def _existing_load(
    cloud: Cloud,
    scenario: Scenario,
    rng: random.Random,
    rc_id: dict[str, int | None],
    now: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, list[InstanceInfo]]]:
    """Instances already running: each host filled with plain flavors (those asking for
    nothing beyond VCPU / RAM / disk) up to a random level below ``existing_load``."""
    cons: list[dict[str, Any]] = []
    allocs: list[dict[str, Any]] = []
    infos: dict[str, list[InstanceInfo]] = {}
    limit = scenario.workload.existing_load
    plain = [
        (i, flavor_demand(f)[0])
        for i, f in enumerate(scenario.flavor)
        if not flavor_demand(f)[1] and set(flavor_demand(f)[0]) <= set(BASE_RCS) and f.weight > 0
    ]
    if limit <= 0 or not plain:
        return cons, allocs, infos
    weights = [scenario.flavor[i].weight for i, _ in plain]
    free = cloud.capacity.copy()
    host_providers: list[list[int]] = [[] for _ in cloud.hosts]
    for p, h in enumerate(cloud.provider_root):
        host_providers[int(h)].append(p)
    host_cap = cloud.host_capacity()
    vcpu, ram = cloud.rcs.index("VCPU"), cloud.rcs.index("MEMORY_MB")
    for h, name in enumerate(cloud.hosts):
        target = rng.uniform(0.0, limit)
        used = np.zeros(len(cloud.rcs))
        while True:
            f_index, demand = rng.choices(plain, weights)[0]
            placed: dict[int, dict[int, int]] = {}
            for rc, amount in demand.items():
                c = cloud.rcs.index(rc)
                where = next((p for p in host_providers[h] if free[p, c] >= amount), None)
                if where is None:
                    placed = {}
                    break
                placed.setdefault(where, {})[c] = amount
            if not placed:
                break
            after = used.copy()
            for per in placed.values():
                for c, amount in per.items():
                    after[c] += amount
            if after[vcpu] > host_cap[h, vcpu] * target or after[ram] > host_cap[h, ram] * target:
                break
            used = after
            for p, per in placed.items():
                for c, amount in per.items():
                    free[p, c] -= amount
            consumer = sim_uuid(rng)
            cid = len(cons) + 1
            cons.append(
                {
                    "id": cid,
                    "uuid": consumer,
                    "project_id": PROJECT,
                    "user_id": USER,
                    "generation": 1,
                    "consumer_type_id": None,
                    "created_at": now,
                }
            )
            for p, per in placed.items():
                for c, amount in per.items():
                    allocs.append(
                        {
                            "resource_provider_id": p + 1,
                            "consumer_id": cid,
                            "resource_class_id": rc_id[cloud.rcs[c]],
                            "used": amount,
                            "created_at": now,
                        }
                    )
            infos.setdefault(name, []).append(
                InstanceInfo(
                    uuid=consumer,
                    project_id=PROJECT,
                    user_id=USER,
                    flavor_name=scenario.flavor[f_index].name,
                )
            )
            cloud.existing.append(Instance(consumer, h, f_index, -1, placed))
    return cons, allocs, infos
