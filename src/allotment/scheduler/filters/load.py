"""Filters on how busy a host is: concurrent I/O operations and instance count, with a
global limit or a per-aggregate one."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from allotment.scheduler.framework import BoolArray, HostFilter, HostView, IntArray, setting

LOG = logging.getLogger(__name__)


def aggregate_limit(view: HostView, key: str, default: int, pos: IntArray) -> IntArray:
    """Per host, the smallest ``key`` value in its aggregates, else ``default`` (Nova's
    ``validate_num_values``; an unparsable value falls back to the default)."""

    def limit(code: int) -> int:
        values = view.aggregate_values(code, key)
        if not values:
            return default
        try:
            return min(int(v) for v in values)
        except ValueError:
            LOG.warning("Could not decode %s: %s", key, sorted(values))
            return default

    result: IntArray = view.per_aggregate_set(limit, pos, np.int64)
    return result


class BelowCeilingFilter(HostFilter):
    """A host passes while a per-host count is below its ceiling: the global option, or,
    for the Aggregate* variants, the smallest value of the same key in its aggregates."""

    limit_key: ClassVar[str]  # the option and the aggregate metadata key
    counted: ClassVar[str]  # the HostView column counted
    counted_as: ClassVar[str]  # what the count is, in a rejection reason
    per_aggregate: ClassVar[bool] = False

    def count(self, view: HostView) -> IntArray:
        counts: IntArray = getattr(view, self.counted)
        return counts

    def ceilings(self, view: HostView, pos: IntArray) -> IntArray:
        """The limit of each host at ``pos``."""
        default = int(getattr(self.options, self.limit_key))
        if self.per_aggregate:
            return aggregate_limit(view, self.limit_key, default, pos)
        return np.full(len(pos), default, np.int64)

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        result: BoolArray = self.count(view)[pos] < self.ceilings(view, pos)
        return result

    def reason(self, view: HostView, pos: int) -> str:
        limit = int(self.ceilings(view, np.array([pos]))[0])
        return f"{int(self.count(view)[pos])} {self.counted_as} (limit {limit})"


@dataclass(frozen=True, slots=True)
class IoOpsOptions:
    max_io_ops_per_host: int = setting("filter_scheduler.max_io_ops_per_host")


class IoOpsFilter(BelowCeilingFilter):
    """Fewer than ``max_io_ops_per_host`` concurrent I/O operations (builds, resizes...)."""

    options_type = IoOpsOptions
    options: IoOpsOptions
    reason_code = "io_ops"
    limit_key = "max_io_ops_per_host"
    counted = "io_ops"
    counted_as = "I/O operations in progress"


class AggregateIoOpsFilter(IoOpsFilter):
    """IoOpsFilter with the limit overridable by aggregate metadata ``max_io_ops_per_host``."""

    per_aggregate = True


@dataclass(frozen=True, slots=True)
class NumInstancesOptions:
    max_instances_per_host: int = setting("filter_scheduler.max_instances_per_host")


class NumInstancesFilter(BelowCeilingFilter):
    """Fewer than ``max_instances_per_host`` instances."""

    options_type = NumInstancesOptions
    options: NumInstancesOptions
    reason_code = "num_instances"
    limit_key = "max_instances_per_host"
    counted = "num_instances"
    counted_as = "instances"


class AggregateNumInstancesFilter(NumInstancesFilter):
    """NumInstancesFilter with the limit overridable by aggregate metadata
    ``max_instances_per_host``."""

    per_aggregate = True
