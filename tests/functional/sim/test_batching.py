"""Batched replay against the one-call-at-a-time replay: where no departure or move falls
inside a batch (``batch_window_s = 0``) the coalesced batches decide what the calls would
one after the other, so every instance lands on the same host with the same allocations,
checkpoint by checkpoint.

Where they may differ, and why the I/O ops weigher is off:
- a batch asks each distinct placement query once, before its calls claim; a host an
  earlier call of the batch filled is taken out of a later call's hosts before weighing
  ("placement_capacity"), where one call after the other would not have been offered it
  ("placement"). So the stage a refusal is counted under may differ, not the pick;
- a batch counts the earlier calls' instances in each host's I/O ops (as Nova's shared
  host states do) and the IoOpsWeigher (multiplier -1.0) sees them; one call after the
  other reads I/O ops from the host reports, which the replay does not send again;
- placement answers at most ``[scheduler] max_placement_results`` hosts: a batch cannot
  see hosts beyond those the first asking got (the tiny cloud has 10).
"""

from __future__ import annotations

from typing import Any

import pytest

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


def variant(coalesce: bool, weighers: dict[str, Any], **workload: Any) -> Scenario:
    data = scenario_data(**workload)
    data["batch_window_s"] = 0
    data["policy"] = [
        {"name": "p", "scheduler": {"coalesce": coalesce}, "filter_scheduler": weighers}
    ]
    return parse_scenario(data)


@pytest.mark.parametrize(
    "weighers",
    [
        pytest.param({"weight_classes": []}, id="no-weighers"),
        # Every default weigher but I/O ops (see above): the normalization of a later call
        # of a batch must not count the hosts the earlier calls filled.
        pytest.param({"io_ops_weight_multiplier": 0.0}, id="weighers"),
    ],
)
def test_batches_place_what_one_call_after_the_other_places(weighers: dict[str, Any]) -> None:
    # Lifetimes long against the arrival gaps, so that batches of several calls form.
    workload = {"requests": 150, "lifetime": {"distribution": "exponential", "mean_h": 200}}
    one_by_one, alone = replay(variant(False, weighers, **workload))
    batched, together = replay(variant(True, weighers, **workload))
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
