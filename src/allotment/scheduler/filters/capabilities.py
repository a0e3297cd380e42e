"""ComputeCapabilitiesFilter: flavor extra specs matched against host capabilities.

``capabilities:<path>`` specs walk into the host's attributes (``cpu_info:arch``,
``hypervisor_type``, compute stats...); unscoped specs apply when the host has an
attribute or stat of that name; other scopes are ignored. Values are compared with
Nova's extra-spec operators. Each spec is evaluated once per distinct host value.
"""

from __future__ import annotations

import numpy as np

from allotment.scheduler.filters import host_attributes as attrs
from allotment.scheduler.filters.extra_specs_ops import match
from allotment.scheduler.framework import BoolArray, HostFilter, HostRecord, HostView, IntArray

# (extra spec key, attribute path, requirement, scoped)
_Spec = tuple[str, list[str], str, bool]


def _specs(extra_specs: dict[str, str]) -> list[_Spec]:
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
    reason_code = "capabilities"

    def prepare(self, view: HostView) -> bool:
        specs = _specs(view.spec.extra_specs)
        view.state.write(self.name, specs)
        return bool(specs)

    def _specs(self, view: HostView) -> list[_Spec]:
        specs: list[_Spec] = view.state.read(self.name, list)
        return specs

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        ok = np.ones(len(pos), np.bool_)
        for _, path, req, scoped in self._specs(view):
            ok &= self._check(view, pos, path, req, scoped)
        return ok

    def _check(
        self, view: HostView, pos: IntArray, path: list[str], req: str, scoped: bool
    ) -> BoolArray:
        head = path[0]
        if head in attrs.DYNAMIC:
            values = [attrs.lookup(view, int(p), path) for p in pos.tolist()]
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

        return view.per_value(("capability", tuple(path), scoped), read, evaluate, pos)

    def reason(self, view: HostView, pos: int) -> str:
        at = np.array([pos])
        for key, path, req, scoped in self._specs(view):
            if not self._check(view, at, path, req, scoped)[0]:
                value = attrs.lookup(view, pos, path)
                return f"extra spec {key}={req!r} does not match the host's {value!r}"
        return super().reason(view, pos)
