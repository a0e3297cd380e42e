"""ComputeCapabilitiesFilter: flavor extra specs matched against host capabilities.

``capabilities:<path>`` specs walk into the host's attributes (``cpu_info:arch``,
``hypervisor_type``, compute stats...); unscoped specs apply when the host has an
attribute or stat of that name; other scopes are ignored. Values are compared with
Nova's extra-spec operators. Each spec is evaluated once per distinct host value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from allotment.scheduler.filters import host_attributes as attrs
from allotment.scheduler.filters.base import HostFilter
from allotment.scheduler.filters.extra_specs_ops import match
from allotment.scheduler.records import HostRecord
from allotment.scheduler.snapshot import BoolArray, IntArray

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


def _specs(extra_specs: dict[str, str]) -> list[tuple[str, list[str], str, bool]]:
    """(extra spec key, attribute path, requirement, scoped) for the specs this filter
    reads; ``hw:maxphysaddr_bits`` becomes a capability check as in Nova."""
    found = []
    for key, req in extra_specs.items():
        if key == "hw:maxphysaddr_bits":
            found.append((key, ["cpu_info", "maxphysaddr", "bits"], ">= " + req, True))
            continue
        scope = key.split(":")
        if len(scope) == 1:
            found.append((key, scope, req, False))
        elif scope[0] == "capabilities":
            found.append((key, scope[1:], req, True))
    return found


class ComputeCapabilitiesFilter(HostFilter):
    run_filter_once_per_request = True

    def applies(self, cycle: Cycle) -> bool:
        return bool(_specs(cycle.spec.extra_specs))

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        ok = np.ones(len(pos), np.bool_)
        for _, path, req, scoped in _specs(cycle.spec.extra_specs):
            ok &= self._check(cycle, pos, path, req, scoped)
        return ok

    def _check(
        self, cycle: Cycle, pos: IntArray, path: list[str], req: str, scoped: bool
    ) -> BoolArray:
        head = path[0]
        if head in attrs.DYNAMIC:
            values = [attrs.lookup(cycle, int(p), path) for p in pos.tolist()]
            return np.fromiter(
                (v is not None and match(str(v), req) for v in values), np.bool_, len(pos)
            )

        def read(record: HostRecord) -> tuple[bool, str | None]:
            # (does the spec apply to this host, the capability as a string)
            if not scoped and head not in attrs.STATIC and head not in record.report.stats:
                return (False, None)
            value = attrs.walk(attrs.first_level(record, head), path[1:])
            return (True, None if value is None else str(value))

        def evaluate(found: tuple[bool, str | None]) -> bool:
            applies, value = found
            if not applies:
                return True
            return value is not None and match(value, req)

        return cycle.per_value(("capability", tuple(path), scoped), read, evaluate, pos)

    def reason(self, cycle: Cycle, pos: int) -> str:
        at = np.array([pos])
        for key, path, req, scoped in _specs(cycle.spec.extra_specs):
            if not self._check(cycle, at, path, req, scoped)[0]:
                value = attrs.lookup(cycle, pos, path)
                return f"extra spec {key}={req!r} does not match the host's {value!r}"
        return super().reason(cycle, pos)
