"""Filters on host aggregate metadata. Hosts in the same set of aggregates get the same
answer, so each is evaluated once per distinct set of aggregates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from allotment.scheduler.filters.base import HostFilter
from allotment.scheduler.filters.extra_specs_ops import match
from allotment.scheduler.snapshot import BoolArray, IntArray

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle

_EXTRA_SPECS_SCOPE = "aggregate_instance_extra_specs"


class AggregateInstanceExtraSpecsFilter(HostFilter):
    """Each unscoped or ``aggregate_instance_extra_specs:``-scoped flavor extra spec must
    match a value of that key in the host's aggregates (other scopes are ignored)."""

    run_filter_once_per_request = True

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

    def _failure(self, cycle: Cycle, code: int) -> str | None:
        metadata = cycle.snapshot.aggregate_metadata(code)
        for key, req in self._specs(cycle):
            values = metadata.get(key)
            if not values:
                return f"no aggregate of the host defines {key!r}"
            if not any(match(value, req) for value in values):
                return f"aggregate values {sorted(values)} of {key!r} do not match {req!r}"
        return None

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        return cycle.per_aggregate_set(lambda code: self._failure(cycle, code) is None, pos)

    def reason(self, cycle: Cycle, pos: int) -> str:
        code = int(cycle.snapshot.aggregate_set[cycle.rows[pos]])
        return self._failure(cycle, code) or super().reason(cycle, pos)


class AggregateMultiTenancyIsolation(HostFilter):
    """Hosts in aggregates with ``filter_tenant_id*`` keys only take those projects."""

    run_filter_once_per_request = True

    def _tenants(self, cycle: Cycle, code: int) -> set[str]:
        metadata = cycle.snapshot.aggregate_metadata(code)
        tenants: set[str] = set()
        for key, values in metadata.items():
            if key.startswith("filter_tenant_id"):
                tenants |= values
        return tenants

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        project = cycle.spec.project_id

        def allowed(code: int) -> bool:
            tenants = self._tenants(cycle, code)
            return not tenants or project in tenants

        return cycle.per_aggregate_set(allowed, pos)

    def reason(self, cycle: Cycle, pos: int) -> str:
        code = int(cycle.snapshot.aggregate_set[cycle.rows[pos]])
        return (
            f"the host's aggregates are reserved for projects {sorted(self._tenants(cycle, code))}"
        )


class AggregateImagePropertiesIsolation(HostFilter):
    """Aggregate metadata keys that are also image properties must list the image's value
    (optionally only keys under ``aggregate_image_properties_isolation_namespace``)."""

    run_filter_once_per_request = True

    def applies(self, cycle: Cycle) -> bool:
        return bool(cycle.spec.image_properties)

    def _failure(self, cycle: Cycle, code: int) -> str | None:
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

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        return cycle.per_aggregate_set(lambda code: self._failure(cycle, code) is None, pos)

    def reason(self, cycle: Cycle, pos: int) -> str:
        code = int(cycle.snapshot.aggregate_set[cycle.rows[pos]])
        return self._failure(cycle, code) or super().reason(cycle, pos)


class AggregateTypeAffinityFilter(HostFilter):
    """Hosts in aggregates with ``instance_type`` metadata only take those flavors."""

    run_filter_once_per_request = True

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        flavor = cycle.spec.flavor.name

        def allowed(code: int) -> bool:
            values = cycle.snapshot.aggregate_values(code, "instance_type")
            if any(flavor in [x.strip() for x in v.split(",")] for v in values):
                return True
            return not values

        return cycle.per_aggregate_set(allowed, pos)

    def reason(self, cycle: Cycle, pos: int) -> str:
        code = int(cycle.snapshot.aggregate_set[cycle.rows[pos]])
        values = sorted(cycle.snapshot.aggregate_values(code, "instance_type"))
        return f"the host's aggregates only take flavors {values}"
