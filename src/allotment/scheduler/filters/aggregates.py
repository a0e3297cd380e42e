"""Filters on host aggregate metadata. Hosts in the same set of aggregates get the same
answer, so each is evaluated once per distinct set of aggregates."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from allotment.scheduler.filters.base import HostFilter
from allotment.scheduler.filters.extra_specs_ops import match
from allotment.scheduler.snapshot import BoolArray, IntArray

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle

_EXTRA_SPECS_SCOPE = "aggregate_instance_extra_specs"


class AggregateSetFilter(HostFilter):
    """A filter whose answer depends only on the host's set of aggregates: ``failure`` is
    asked once per distinct set and says why hosts in it fail (None if they pass)."""

    run_filter_once_per_request = True

    @abc.abstractmethod
    def failure(self, cycle: Cycle, code: int) -> str | None:
        """Why hosts whose aggregate set is ``code`` fail, or None."""

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        return cycle.per_aggregate_set(lambda code: self.failure(cycle, code) is None, pos)

    def reason(self, cycle: Cycle, pos: int) -> str:
        code = int(cycle.snapshot.aggregate_set[cycle.rows[pos]])
        return self.failure(cycle, code) or super().reason(cycle, pos)


class AggregateInstanceExtraSpecsFilter(AggregateSetFilter):
    """Each unscoped or ``aggregate_instance_extra_specs:``-scoped flavor extra spec must
    match a value of that key in the host's aggregates (other scopes are ignored)."""

    def _specs(self, cycle: Cycle) -> list[tuple[str, str]]:
        found = []
        for key, req in cycle.spec.extra_specs.items():
            scope = key.split(":", 1)
            if len(scope) > 1:
                if scope[0] != _EXTRA_SPECS_SCOPE:
                    continue
                key = scope[1]
            found.append((key, req))
        return found

    def applies(self, cycle: Cycle) -> bool:
        return bool(cycle.spec.extra_specs)

    def failure(self, cycle: Cycle, code: int) -> str | None:
        metadata = cycle.snapshot.aggregate_metadata(code)
        for key, req in self._specs(cycle):
            values = metadata.get(key)
            if not values:
                return f"no aggregate of the host defines {key!r}"
            if not any(match(value, req) for value in values):
                return f"aggregate values {sorted(values)} of {key!r} do not match {req!r}"
        return None


class AggregateMultiTenancyIsolation(AggregateSetFilter):
    """Hosts in aggregates with ``filter_tenant_id*`` keys only take those projects."""

    def _tenants(self, cycle: Cycle, code: int) -> set[str]:
        metadata = cycle.snapshot.aggregate_metadata(code)
        tenants: set[str] = set()
        for key, values in metadata.items():
            if key.startswith("filter_tenant_id"):
                tenants |= values
        return tenants

    def failure(self, cycle: Cycle, code: int) -> str | None:
        tenants = self._tenants(cycle, code)
        if not tenants or cycle.spec.project_id in tenants:
            return None
        return f"the host's aggregates are reserved for projects {sorted(tenants)}"


class AggregateImagePropertiesIsolation(AggregateSetFilter):
    """Aggregate metadata keys that are also image properties must list the image's value
    (optionally only keys under ``aggregate_image_properties_isolation_namespace``)."""

    def applies(self, cycle: Cycle) -> bool:
        return bool(cycle.spec.image_properties)

    def failure(self, cycle: Cycle, code: int) -> str | None:
        options = self.settings.filter_scheduler
        namespace = options.aggregate_image_properties_isolation_namespace
        prefix = f"{namespace}{options.aggregate_image_properties_isolation_separator}"
        props = cycle.spec.image_properties
        for key, allowed in cycle.snapshot.aggregate_metadata(code).items():
            if namespace and not key.startswith(prefix):
                continue
            prop = props.get(key)
            if prop and str(prop) not in allowed:
                return f"image property {key}={prop!r} is not in the aggregate's {sorted(allowed)}"
        return None


class AggregateTypeAffinityFilter(AggregateSetFilter):
    """Hosts in aggregates with ``instance_type`` metadata only take those flavors."""

    def failure(self, cycle: Cycle, code: int) -> str | None:
        flavor = cycle.spec.flavor.name
        values = cycle.snapshot.aggregate_values(code, "instance_type")
        if not values or any(flavor in [x.strip() for x in v.split(",")] for v in values):
            return None
        return f"the host's aggregates only take flavors {sorted(values)}"
