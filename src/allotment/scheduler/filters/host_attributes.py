"""Host attributes by Nova's HostState names, for filters that let operators name them
(ComputeCapabilitiesFilter's ``capabilities:...`` extra specs, JsonFilter's ``$...``).

Static attributes come from the host report and are read once per snapshot; dynamic
ones change as instances are placed in the cycle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from allotment.scheduler.framework import HostRecord, HostView

STATIC: dict[str, Callable[[HostRecord], Any]] = {
    "host": lambda r: r.host,
    "nodename": lambda r: r.nodename,
    "hypervisor_hostname": lambda r: r.nodename,
    "uuid": lambda r: r.uuid,
    "hypervisor_type": lambda r: r.report.hypervisor_type,
    "hypervisor_version": lambda r: r.report.hypervisor_version,
    "cpu_info": lambda r: r.report.cpu_info.model_dump(),
    "host_ip": lambda r: r.report.host_ip,
    "supported_instances": lambda r: [list(t) for t in r.report.supported_instances],
    "stats": lambda r: dict(r.report.stats),
    "cpu_allocation_ratio": lambda r: r.report.cpu_allocation_ratio,
    "ram_allocation_ratio": lambda r: r.report.ram_allocation_ratio,
}

DYNAMIC: dict[str, Callable[[HostView, int], Any]] = {
    "free_ram_mb": lambda c, p: int(c.free_ram_mb[p]),
    "free_disk_mb": lambda c, p: int(c.free_disk_mb[p]),
    "num_instances": lambda c, p: int(c.num_instances[p]),
    "num_io_ops": lambda c, p: int(c.io_ops[p]),
    "failed_builds": lambda c, p: int(c.record(p).report.failed_builds),
}


def walk(value: Any, path: Sequence[str], stats: dict[str, str] | None = None) -> Any:
    """Follow ``path`` into ``value`` as Nova's capability lookup does: JSON strings are
    decoded, dicts are indexed; None when anything along the way is missing."""
    for part in path:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return None
        if isinstance(value, dict):
            value = value.get(part)
        else:
            return None
        if value is None:
            return None
    return value


def first_level(record: HostRecord, name: str) -> Any:
    """A top-level static attribute, falling back to the compute stats (as Nova does)."""
    reader = STATIC.get(name)
    value = reader(record) if reader is not None else None
    if value is None:
        value = record.report.stats.get(name)
    return value


def lookup(view: HostView, pos: int, path: Sequence[str]) -> Any:
    """The value at ``path`` for the host at ``pos`` (dynamic attributes included)."""
    head, rest = path[0], path[1:]
    if head in DYNAMIC:
        return walk(DYNAMIC[head](view, pos), rest)
    return walk(first_level(view.record(pos), head), rest)
