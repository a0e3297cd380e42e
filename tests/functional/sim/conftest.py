"""Small scenarios for the simulator's tests (a few seconds each)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from allotment.sim.scenario import Scenario, parse_scenario


def scenario_data(**workload: Any) -> dict[str, Any]:
    """Two host shapes (one with NUMA children, one with GPU children) in two zones, a
    flavor mix that includes a 2-GPU flavor, groups, zone hints, resizes, migrations and
    enough load for some NoValidHost."""
    return {
        "name": "tiny",
        "checkpoints": 8,
        "aggregate": [{"name": "fast", "metadata": {"fast": "true"}}],
        "hosts": [
            {
                "name": "cmp",
                "count": 6,
                "vcpus": 8,
                "memory_mb": 16384,
                "disk_gb": 200,
                "azs": ["az1", "az2"],
                "aggregates": ["fast"],
            },
            {
                "name": "big",
                "count": 2,
                "vcpus": 16,
                "memory_mb": 32768,
                "disk_gb": 400,
                "numa_nodes": 2,
                "azs": ["az1"],
            },
            {
                "name": "gpu",
                "count": 2,
                "vcpus": 16,
                "memory_mb": 65536,
                "disk_gb": 400,
                "azs": ["az2"],
                "gpus": {"count": 4, "resource_class": "VGPU"},
            },
        ],
        "flavor": [
            {"name": "small", "vcpus": 1, "memory_mb": 2048, "root_gb": 10, "weight": 5},
            {"name": "large", "vcpus": 4, "memory_mb": 8192, "root_gb": 40, "weight": 2},
            {"name": "xlarge", "vcpus": 8, "memory_mb": 16384, "root_gb": 80, "weight": 1},
            {
                "name": "g2",
                "vcpus": 4,
                "memory_mb": 8192,
                "root_gb": 20,
                "weight": 1,
                "extra_specs": {
                    "resources1:VGPU": "1",
                    "resources2:VGPU": "1",
                    "group_policy": "isolate",
                },
            },
        ],
        "workload": {
            "seed": 11,
            "requests": 120,
            "duration_h": 48,
            "existing_load": 0.3,
            "az_hints": {"az1": 0.2, "az2": 0.2},
            "resize_fraction": 0.1,
            "migrate_fraction": 0.1,
            "lifetime": {"distribution": "exponential", "mean_h": 40},
            "groups": {"fraction": 0.2, "size_min": 2, "size_max": 3},
            **workload,
        },
    }


@pytest.fixture
def tiny() -> Scenario:
    return parse_scenario(scenario_data())


def toml_text(data: dict[str, Any]) -> str:
    """Just enough TOML for these dicts (tables, arrays of tables, inline values)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    tables = {k: v for k, v in data.items() if isinstance(v, dict | list) and k != "azs"}
    for key, v in data.items():
        if key not in tables:
            lines.append(f"{key} = {value(v)}")
    for key, v in tables.items():
        if isinstance(v, list):
            for item in v:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {value(x)}" for k, x in item.items()]
        else:
            lines.append(f"[{key}]")
            lines += [f"{k} = {value(x)}" for k, x in v.items()]
    return "\n".join(lines) + "\n"
