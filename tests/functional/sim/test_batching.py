"""Batched replay against the one-call-at-a-time replay: where no departure or move falls
inside a batch (``batch_window_s = 0``) the coalesced batches decide what the calls would
one after the other, so every instance lands on the same host with the same allocations,
checkpoint by checkpoint.

Where they may differ, and why this test turns the weighers off:
- a batch asks each distinct placement query once, before its calls claim; a host an
  earlier call of the batch filled stays among a later call's hosts and is passed over at
  its pick ("placement_capacity"), where one call after the other would not have been
  offered it ("placement"). So the stage a refusal is counted under may differ;
- weighers normalize over the hosts of the call, and that full host still counts there,
  so with weighers on a later call of the batch may rank (and pick) differently;
- a batch counts the earlier calls' instances in each host's I/O ops (as Nova's shared
  host states do) and the IoOpsWeigher (multiplier -1.0) sees them; one call after the
  other reads I/O ops from the host reports, which the replay does not send again;
- placement answers at most ``[scheduler] max_placement_results`` hosts: a batch cannot
  see hosts beyond those the first asking got (the tiny cloud has 10).
"""

from __future__ import annotations

from typing import Any

from allotment.sim.engine import Simulation
from allotment.sim.scenario import Scenario, parse_scenario
from allotment.sim.workload import generate
from tests.functional.sim.conftest import scenario_data

Placements = dict[str, tuple[int, dict[int, dict[int, int]]]]


def replay(scenario: Scenario) -> tuple[list[Placements], dict[str, Any]]:
    seen: list[Placements] = []

    def record(sim: Simulation, t: float) -> None:
        seen.append({u: (i.host, i.allocations) for u, i in sim.alive.items()})

    sim = Simulation(scenario, scenario.policy[0], generate(scenario), on_checkpoint=record)
    try:
        result = sim.run()
    finally:
        sim.close()
    return seen, result.totals


def variant(coalesce: bool, **workload: Any) -> Scenario:
    data = scenario_data(**workload)
    data["batch_window_s"] = 0
    data["policy"] = [
        {
            "name": "p",
            "scheduler": {"coalesce": coalesce},
            "filter_scheduler": {"weight_classes": []},
        }
    ]
    return parse_scenario(data)


def test_batches_place_what_one_call_after_the_other_places() -> None:
    # Lifetimes long against the arrival gaps, so that batches of several calls form.
    workload = {"requests": 150, "lifetime": {"distribution": "exponential", "mean_h": 200}}
    one_by_one, alone = replay(variant(False, **workload))
    batched, together = replay(variant(True, **workload))
    assert alone["batches"] == alone["requests"] == 150
    assert together["batches"] < together["requests"] / 2, together
    assert batched == one_by_one
    for key in (
        "instances_placed",
        "requests_rejected",
        "instances_rejected",
        "departures",
        "moves",
        "moves_failed",
    ):
        assert together[key] == alone[key], key
    assert alone["instances_rejected"] > 0 and alone["moves"] > 0, alone
