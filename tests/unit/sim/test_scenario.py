"""Scenario validation (each error names the key and what was wrong), the workload
generator (seeded, Poisson arrivals, the shares the scenario asks for) and the trace
reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from allotment.errors import ConfigError
from allotment.sim.scenario import load_scenario, parse_scenario
from allotment.sim.workload import GROUP_POLICIES, MOVE_MIGRATE, MOVE_RESIZE, generate

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "scenarios"


def base(**workload: Any) -> dict[str, Any]:
    return {
        "hosts": [{"name": "h", "count": 4, "vcpus": 8, "memory_mb": 8192, "azs": ["a", "b"]}],
        "flavor": [
            {"name": "s", "vcpus": 1, "memory_mb": 1024, "weight": 3},
            {"name": "l", "vcpus": 4, "memory_mb": 4096, "weight": 1},
        ],
        "workload": {"seed": 1, "requests": 20000, "duration_h": 100, **workload},
    }


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(data, "test.toml")
    return str(caught.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["hosts"][0].update(count=0), "hosts.0.count: Input should be greater"),
        (lambda d: d["hosts"][0].update(cpus=8), "hosts.0.cpus: unknown key"),
        (lambda d: d.pop("flavor"), "flavor: required"),
        (lambda d: d["hosts"][0].update(aggregates=["x"]), "names aggregate 'x', which no"),
        (lambda d: d["hosts"][0].update(numa_nodes=3), "must divide evenly into numa_nodes"),
        (lambda d: d["workload"].update(az_hints={"c": 0.5}), "zones no host is in: c"),
        (lambda d: d["workload"].update(az_hints={"a": 0.8, "b": 0.5}), "sum to at most 1"),
        (
            lambda d: d["workload"].update(
                lifetime={"distribution": "uniform", "max_h": 0.5, "min_h": 1}
            ),
            "max_h greater than min_h",
        ),
        (
            lambda d: d.update(policy=[{"name": "p", "filter_scheduler": {"host_subset": 2}}]),
            "filter_scheduler.host_subset: unknown option",
        ),
        (
            lambda d: d.update(policy=[{"name": "p", "filter_scheduler": {"host_subset_size": 0}}]),
            "filter_scheduler.host_subset_size: Input should be greater than or equal to 1",
        ),
        (lambda d: d.update(policy=[{"name": "p"}, {"name": "p"}]), "policy names must be unique"),
        (lambda d: d["flavor"][0].update(weight=-1), "flavor.0.weight"),
        (lambda d: d["workload"].update(trace="missing.csv"), "workload.trace: missing.csv does"),
    ],
)
def test_errors_name_the_key(change: Any, expected: str) -> None:
    data = base()
    change(data)
    message = error_of(data)
    assert message.startswith("invalid scenario test.toml:")
    assert expected in message


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenario(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("hosts = [")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_scenario(bad)


def test_examples_are_valid() -> None:
    general = load_scenario(EXAMPLES / "general.toml")
    gpu = load_scenario(EXAMPLES / "gpu.toml")
    assert [p.name for p in general.policy] == ["spread", "pack"]
    assert gpu.hosts[0].gpus is not None and gpu.hosts[0].gpus.count == 8
    assert gpu.workload.groups.policies == {"anti-affinity": 1}


def test_generated_workload_is_seeded_and_follows_the_shares() -> None:
    scenario = parse_scenario(
        base(
            az_hints={"a": 0.25},
            resize_fraction=0.1,
            migrate_fraction=0.05,
            groups={
                "fraction": 0.2,
                "size_min": 2,
                "size_max": 5,
                "policies": {"affinity": 1, "anti-affinity": 3},
            },
            lifetime={"distribution": "lognormal", "mean_h": 10, "sigma": 0.5},
        )
    )
    one, two = generate(scenario), generate(scenario)
    assert np.array_equal(one.time, two.time) and np.array_equal(one.flavor, two.flavor)
    n = len(one)
    assert n == 20000
    assert np.all(np.diff(one.time) >= 0) and one.time[-1] <= 100
    # Poisson arrivals: exponential gaps (coefficient of variation ~1).
    gaps = np.diff(one.time)
    assert 0.9 < gaps.std() / gaps.mean() < 1.1
    assert abs((one.flavor == 0).mean() - 0.75) < 0.02
    assert abs((one.az == 0).mean() - 0.25) < 0.02 and not (one.az == 1).any()
    grouped = one.group >= 0
    assert abs(grouped.mean() - 0.2) < 0.02
    assert one.count[grouped].min() == 2 and one.count[grouped].max() == 5
    assert (one.count[~grouped] == 1).all()
    anti = GROUP_POLICIES.index("anti-affinity")
    assert abs((one.group_policy[grouped] == anti).mean() - 0.75) < 0.05
    assert abs((one.move == MOVE_RESIZE).mean() - 0.1) < 0.02
    assert abs((one.move == MOVE_MIGRATE).mean() - 0.05) < 0.02
    assert abs(one.lifetime.mean() - 10) < 0.5
    other = generate(
        scenario.model_copy(update={"workload": scenario.workload.model_copy(update={"seed": 2})})
    )
    assert not np.array_equal(one.time, other.time)


def test_trace(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("time,flavor,lifetime,group,az\n5,l,2,,\n1,s,,g1,a\n3,s,4,g1,\n")
    data = base(trace="t.csv")
    (tmp_path / "s.toml").write_text("")
    scenario = parse_scenario(data, "s.toml", tmp_path)
    req = generate(scenario)
    assert req.time.tolist() == [1, 3, 5]
    assert req.flavor.tolist() == [0, 0, 1]
    assert req.lifetime.tolist() == [np.inf, 4, 2]
    assert req.group.tolist() == [0, 0, -1]
    assert req.az.tolist() == [0, -1, -1]
    trace.write_text("time,flavor\n1,xl\n")
    with pytest.raises(ConfigError, match=r"t.csv:2: unknown flavor 'xl'"):
        generate(scenario)
    trace.write_text("time,flavor,az\n1,s,zz\n")
    with pytest.raises(ConfigError, match="no host is in zone 'zz'"):
        generate(scenario)
    trace.write_text("when,flavor\n")
    with pytest.raises(ConfigError, match="missing column"):
        generate(scenario)
