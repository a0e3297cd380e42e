"""Filters on how busy a host is: concurrent I/O operations and instance count, with a
global limit or a per-aggregate one."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from allotment.scheduler.filters.base import HostFilter
from allotment.scheduler.snapshot import BoolArray, IntArray

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle

LOG = logging.getLogger(__name__)


def aggregate_limit(cycle: Cycle, key: str, default: int, pos: IntArray) -> IntArray:
    """Per host, the smallest ``key`` value in its aggregates, else ``default`` (Nova's
    ``validate_num_values``; an unparsable value falls back to the default)."""

    def limit(code: int) -> int:
        values = cycle.snapshot.aggregate_values(code, key)
        if not values:
            return default
        try:
            return min(int(v) for v in values)
        except ValueError:
            LOG.warning("Could not decode %s: %s", key, sorted(values))
            return default

    result: IntArray = cycle.per_aggregate_set(limit, pos, np.int64)
    return result


class IoOpsFilter(HostFilter):
    """Fewer than ``max_io_ops_per_host`` concurrent I/O operations (builds, resizes...)."""

    def limits(self, cycle: Cycle, pos: IntArray) -> IntArray:
        return np.full(len(pos), self.settings.filter_scheduler.max_io_ops_per_host, np.int64)

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        result: BoolArray = cycle.io_ops[pos] < self.limits(cycle, pos)
        return result

    def reason(self, cycle: Cycle, pos: int) -> str:
        limit = int(self.limits(cycle, np.array([pos]))[0])
        return f"{int(cycle.io_ops[pos])} I/O operations in progress (limit {limit})"


class AggregateIoOpsFilter(IoOpsFilter):
    """IoOpsFilter with the limit overridable by aggregate metadata ``max_io_ops_per_host``."""

    def limits(self, cycle: Cycle, pos: IntArray) -> IntArray:
        default = self.settings.filter_scheduler.max_io_ops_per_host
        return aggregate_limit(cycle, "max_io_ops_per_host", default, pos)


class NumInstancesFilter(HostFilter):
    """Fewer than ``max_instances_per_host`` instances."""

    def limits(self, cycle: Cycle, pos: IntArray) -> IntArray:
        return np.full(len(pos), self.settings.filter_scheduler.max_instances_per_host, np.int64)

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        result: BoolArray = cycle.num_instances[pos] < self.limits(cycle, pos)
        return result

    def reason(self, cycle: Cycle, pos: int) -> str:
        limit = int(self.limits(cycle, np.array([pos]))[0])
        return f"{int(cycle.num_instances[pos])} instances (limit {limit})"


class AggregateNumInstancesFilter(NumInstancesFilter):
    """NumInstancesFilter with the limit overridable by aggregate metadata
    ``max_instances_per_host``."""

    def limits(self, cycle: Cycle, pos: IntArray) -> IntArray:
        default = self.settings.filter_scheduler.max_instances_per_host
        return aggregate_limit(cycle, "max_instances_per_host", default, pos)
