"""NUMA requests and cell fitting (nova.virt.hardware's rules)."""

from __future__ import annotations

import pytest

from allotment.errors import InvalidInput
from allotment.scheduler.numa import HostNuma, consume, fit, numa_request, parse_cpu_spec
from allotment.scheduler.records import NumaTopology


def host(*cells: dict[str, object]) -> HostNuma:
    return HostNuma.from_report(
        NumaTopology.model_validate({"cells": [{"id": i, **c} for i, c in enumerate(cells)]})
    )


def test_cpu_spec_syntax() -> None:
    assert parse_cpu_spec("0-3,^2,6") == {0, 1, 3, 6}
    with pytest.raises(InvalidInput, match="Invalid CPU range"):
        parse_cpu_spec("3-1")


def test_no_numa_request_without_numa_extra_specs() -> None:
    assert numa_request(2, 1024, {}, {}) is None
    assert numa_request(2, 1024, {"hw:cpu_policy": "shared"}, {}) is None


def test_automatic_and_explicit_layouts() -> None:
    auto = numa_request(4, 2048, {"hw:numa_nodes": "2"}, {})
    assert auto is not None
    assert [(sorted(c.cpus), c.memory_mb) for c in auto.cells] == [([0, 1], 1024), ([2, 3], 1024)]
    explicit = numa_request(
        4,
        2048,
        {
            "hw:numa_nodes": "2",
            "hw:numa_cpus.0": "0",
            "hw:numa_cpus.1": "1-3",
            "hw:numa_mem.0": "512",
            "hw:numa_mem.1": "1536",
        },
        {},
    )
    assert explicit is not None
    assert [(sorted(c.cpus), c.memory_mb) for c in explicit.cells] == [
        ([0], 512),
        ([1, 2, 3], 1536),
    ]
    from_image = numa_request(2, 1024, {}, {"hw_numa_nodes": 2})
    assert from_image is not None and len(from_image.cells) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"hw:numa_nodes": "0"}, "positive integer"),
        ({"hw:numa_nodes": "3"}, "cannot be split evenly"),
        ({"hw:numa_nodes": "2", "hw:numa_cpus.0": "0-1"}, "must both be given"),
    ],
)
def test_invalid_layouts(extra: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        numa_request(4, 2048, extra, {})


def test_pinned_cells_cannot_oversubscribe_memory() -> None:
    request = numa_request(2, 2048, {"hw:cpu_policy": "dedicated"}, {})
    assert request is not None
    assert fit(host({"cpus": [0, 1], "memory_mb": 2048}), request, 16.0, 1.0) is not None
    used = host({"cpus": [0, 1], "memory_mb": 2048, "memory_usage": 1})
    assert fit(used, request, 16.0, 10.0) is None


def test_shared_cells_respect_allocation_ratios() -> None:
    request = numa_request(4, 1024, {"hw:numa_nodes": "1"}, {})
    assert request is not None
    busy = host({"cpus": [0, 1], "memory_mb": 4096, "cpu_usage": 6})
    assert fit(busy, request, 4.0, 1.0) is None
    # More guest vCPUs than host CPUs in the cell never fits, whatever the ratio.
    assert fit(host({"cpus": [0, 1], "memory_mb": 4096}), request, 16.0, 1.0) is None
    assert fit(host({"cpus": [0, 1, 2, 3], "memory_mb": 4096}), request, 1.0, 1.0) is not None


def test_consume_pins_and_counts() -> None:
    topology = host({"cpus": [0, 1, 2, 3], "memory_mb": 4096, "siblings": [[0, 1], [2, 3]]})
    request = numa_request(2, 1024, {"hw:cpu_policy": "dedicated"}, {})
    assert request is not None
    fits = fit(topology, request, 4.0, 1.0)
    assert fits is not None and fits[0].pinned == {0, 1}
    after = consume(topology, request, fits)
    assert after.cells[0].pinned == {0, 1} and after.cells[0].memory_usage == 1024
    again = fit(after, request, 4.0, 1.0)
    assert again is not None and again[0].pinned == {2, 3}
    assert fit(consume(after, request, again), request, 4.0, 1.0) is None


def test_emulator_thread_takes_one_more_cpu() -> None:
    request = numa_request(
        2, 1024, {"hw:cpu_policy": "dedicated", "hw:emulator_threads_policy": "isolate"}, {}
    )
    assert request is not None
    assert fit(host({"cpus": [0, 1], "memory_mb": 4096}), request, 1.0, 1.0) is None
    fits = fit(host({"cpus": [0, 1, 2], "memory_mb": 4096}), request, 1.0, 1.0)
    assert fits is not None and fits[0].pinned == {0, 1, 2}


def test_dedicated_cpu_set_separates_shared_and_pinned() -> None:
    request = numa_request(2, 1024, {"hw:cpu_policy": "dedicated"}, {})
    assert request is not None
    topology = host({"cpus": [0, 1, 2, 3], "pcpus": [3], "memory_mb": 4096})
    assert fit(topology, request, 1.0, 1.0) is None
