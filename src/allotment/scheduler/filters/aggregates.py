"""Filters on host aggregate metadata. Hosts in the same set of aggregates get the same
answer, so each is evaluated once per distinct set of aggregates."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from allotment.scheduler.filters.extra_specs_ops import match
from allotment.scheduler.framework import BoolArray, HostFilter, HostView, IntArray, setting

_EXTRA_SPECS_SCOPE = "aggregate_instance_extra_specs"


class AggregateSetFilter(HostFilter):
    """A filter whose answer depends only on the host's set of aggregates: ``failure`` is
    asked once per distinct set and says why hosts in it fail (None if they pass)."""

    run_filter_once_per_request = True

    @abc.abstractmethod
    def failure(self, view: HostView, code: int) -> str | None:
        """Why hosts whose aggregate set is ``code`` fail, or None."""

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        return view.per_aggregate_set(lambda code: self.failure(view, code) is None, pos)

    def reason(self, view: HostView, pos: int) -> str:
        code = view.aggregate_set(pos)
        return self.failure(view, code) or super().reason(view, pos)


class AggregateInstanceExtraSpecsFilter(AggregateSetFilter):
    """Each unscoped or ``aggregate_instance_extra_specs:``-scoped flavor extra spec must
    match a value of that key in the host's aggregates (other scopes are ignored)."""

    reason_code = "aggregate_extra_specs"

    def _specs(self, view: HostView) -> list[tuple[str, str]]:
        found = []
        for key, req in view.spec.extra_specs.items():
            scope = key.split(":", 1)
            if len(scope) > 1:
                if scope[0] != _EXTRA_SPECS_SCOPE:
                    continue
                key = scope[1]
            found.append((key, req))
        return found

    def prepare(self, view: HostView) -> bool:
        return bool(view.spec.extra_specs)

    def failure(self, view: HostView, code: int) -> str | None:
        metadata = view.aggregate_metadata(code)
        for key, req in self._specs(view):
            values = metadata.get(key)
            if not values:
                return f"no aggregate of the host defines {key!r}"
            if not any(match(value, req) for value in values):
                return f"aggregate values {sorted(values)} of {key!r} do not match {req!r}"
        return None


class AggregateMultiTenancyIsolation(AggregateSetFilter):
    """Hosts in aggregates with ``filter_tenant_id*`` keys only take those projects."""

    reason_code = "tenant_isolation"

    def _tenants(self, view: HostView, code: int) -> set[str]:
        metadata = view.aggregate_metadata(code)
        tenants: set[str] = set()
        for key, values in metadata.items():
            if key.startswith("filter_tenant_id"):
                tenants |= values
        return tenants

    def failure(self, view: HostView, code: int) -> str | None:
        tenants = self._tenants(view, code)
        if not tenants or view.spec.project_id in tenants:
            return None
        return f"the host's aggregates are reserved for projects {sorted(tenants)}"


@dataclass(frozen=True, slots=True)
class ImageIsolationOptions:
    namespace: str | None = setting(
        "filter_scheduler.aggregate_image_properties_isolation_namespace"
    )
    separator: str = setting("filter_scheduler.aggregate_image_properties_isolation_separator")


class AggregateImagePropertiesIsolation(AggregateSetFilter):
    """Aggregate metadata keys that are also image properties must list the image's value
    (optionally only keys under ``aggregate_image_properties_isolation_namespace``)."""

    options_type = ImageIsolationOptions
    options: ImageIsolationOptions
    run_on_rebuild = True
    reason_code = "aggregate_image_props"

    def prepare(self, view: HostView) -> bool:
        return bool(view.spec.image_properties)

    def failure(self, view: HostView, code: int) -> str | None:
        namespace = self.options.namespace
        prefix = f"{namespace}{self.options.separator}"
        props = view.spec.image_properties
        for key, allowed in view.aggregate_metadata(code).items():
            if namespace and not key.startswith(prefix):
                continue
            prop = props.get(key)
            if prop and str(prop) not in allowed:
                return f"image property {key}={prop!r} is not in the aggregate's {sorted(allowed)}"
        return None


class AggregateTypeAffinityFilter(AggregateSetFilter):
    """Hosts in aggregates with ``instance_type`` metadata only take those flavors."""

    reason_code = "aggregate_instance_type"

    def failure(self, view: HostView, code: int) -> str | None:
        flavor = view.spec.flavor.name
        values = view.aggregate_values(code, "instance_type")
        if not values or any(flavor in [x.strip() for x in v.split(",")] for v in values):
            return None
        return f"the host's aggregates only take flavors {sorted(values)}"
