"""The simulation's books against the ledger: at every checkpoint, what placement holds is
exactly what the instances alive in the simulation hold, nothing is over-committed, and
the host cache knows the same instances on the same hosts."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from allotment.placement.store.tables import allocations, consumers, inventories
from allotment.placement.store.tables import resource_providers as rps
from allotment.scheduler import store as host_store
from allotment.sim.engine import Simulation
from allotment.sim.scenario import Scenario, parse_scenario
from allotment.sim.workload import generate


def ledger(sim: Simulation) -> tuple[dict[str, dict[tuple[str, str], int]], dict[Any, float]]:
    """(consumer -> {(provider uuid, rc): used}, (provider uuid, rc) -> capacity) from SQL."""
    services = sim.services
    assert services is not None
    names = services.placement.catalog.resource_classes.name_of
    held: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)
    capacity: dict[Any, float] = {}
    with services.db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                consumers.c.uuid, rps.c.uuid, allocations.c.resource_class_id, allocations.c.used
            )
            .join(consumers, consumers.c.id == allocations.c.consumer_id)
            .join(rps, rps.c.id == allocations.c.resource_provider_id)
        )
        for consumer, rp, rc, used in rows:
            held[consumer][(rp, names(rc))] = used
        for rp, rc, total, reserved, ratio in conn.execute(
            sa.select(
                rps.c.uuid,
                inventories.c.resource_class_id,
                inventories.c.total,
                inventories.c.reserved,
                inventories.c.allocation_ratio,
            ).join(rps, rps.c.id == inventories.c.resource_provider_id)
        ):
            capacity[(rp, names(rc))] = (total - reserved) * ratio
    return held, capacity


def books(sim: Simulation) -> dict[str, dict[tuple[str, str], int]]:
    cloud = sim.cloud
    return {
        inst.consumer: {
            (cloud.provider_uuid[p], cloud.rcs[c]): amount
            for p, per in inst.allocations.items()
            for c, amount in per.items()
        }
        for inst in sim.alive.values()
    }


def test_placement_holds_exactly_what_the_alive_instances_hold(tiny: Scenario) -> None:
    checked: list[float] = []

    def check(sim: Simulation, t: float) -> None:
        held, capacity = ledger(sim)
        assert held == books(sim), f"ledger and simulation disagree at {t} h"
        used: dict[tuple[str, str], int] = defaultdict(int)
        for per in held.values():
            for key, amount in per.items():
                used[key] += amount
        over = {k: (v, capacity[k]) for k, v in used.items() if v > capacity[k]}
        assert not over, f"over-committed at {t} h: {over}"
        # The books' per-provider totals, which the metrics are computed from, too.
        for (rp, rc), amount in used.items():
            p, c = sim.cloud.provider_index[rp], sim.cloud.rcs.index(rc)
            assert sim.used[p, c] == amount
        assert sim.used.sum() == sum(used.values())
        # The scheduler's host cache holds the same instances on the same hosts.
        services = sim.services
        assert services is not None
        with services.db.engine.connect() as conn:
            rows = conn.execute(sa.select(host_store.instances.c.uuid, host_store.instances.c.host))
            known = {str(uuid): str(host) for uuid, host in rows}
        assert known == {u: sim.cloud.hosts[i.host] for u, i in sim.alive.items()}
        checked.append(t)

    sim = Simulation(tiny, tiny.policy[0], generate(tiny), on_checkpoint=check)
    try:
        result = sim.run()
    finally:
        sim.close()
    assert len(checked) == tiny.checkpoints
    totals = result.totals
    # The workload really exercised placements, departures, moves and rejections.
    assert totals["instances_placed"] > 50
    assert totals["departures"] > 10
    assert totals["moves"] > 0
    assert totals["instances_rejected"] > 0, totals
    assert totals["existing_instances"] > 0
    assert (
        totals["instances_placed"] + totals["instances_rejected"] == totals["instances_requested"]
    )
    assert sum(sum(v) for v in result.rejections.values()) == sum(
        totals["rejections_by_reason"].values()
    )


def test_anti_affinity_groups_never_share_a_host(tiny: Scenario) -> None:
    """Every checkpoint: no two live members of an anti-affinity group on one host."""
    data = tiny.model_dump()
    data["workload"]["groups"] = {
        "fraction": 0.5,
        "size_min": 2,
        "size_max": 3,
        "policies": {"anti-affinity": 1.0},
    }
    data["workload"]["resize_fraction"] = 0.0
    scenario = parse_scenario(data)
    seen = [0]

    def check(sim: Simulation, t: float) -> None:
        for members in sim.groups.values():
            hosts = [sim.alive[m].host for m in members]
            assert len(hosts) == len(set(hosts)), f"group on one host at {t} h: {hosts}"
            seen[0] += len(members) > 1

    sim = Simulation(scenario, scenario.policy[0], generate(scenario), on_checkpoint=check)
    try:
        result = sim.run()
    finally:
        sim.close()
    assert seen[0] > 0
    assert result.totals["rejections_by_reason"], "a full fleet rejects some groups"
