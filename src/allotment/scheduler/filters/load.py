"""Filters on how busy a host is: concurrent I/O operations and instance count, with a
global limit or a per-aggregate one."""

from __future__ import annotations

import logging
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class IoOpsOptions:
    max_io_ops_per_host: int = setting("filter_scheduler.max_io_ops_per_host")


class IoOpsFilter(HostFilter):
    """Fewer than ``max_io_ops_per_host`` concurrent I/O operations (builds, resizes...)."""

    options_type = IoOpsOptions
    options: IoOpsOptions
    reason_code = "io_ops"

    def ceilings(self, view: HostView, pos: IntArray) -> IntArray:
        """The I/O operation limit of each host at ``pos``."""
        return np.full(len(pos), self.options.max_io_ops_per_host, np.int64)

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        result: BoolArray = view.io_ops[pos] < self.ceilings(view, pos)
        return result

    def reason(self, view: HostView, pos: int) -> str:
        limit = int(self.ceilings(view, np.array([pos]))[0])
        return f"{int(view.io_ops[pos])} I/O operations in progress (limit {limit})"


class AggregateIoOpsFilter(IoOpsFilter):
    """IoOpsFilter with the limit overridable by aggregate metadata ``max_io_ops_per_host``."""

    def ceilings(self, view: HostView, pos: IntArray) -> IntArray:
        default = self.options.max_io_ops_per_host
        return aggregate_limit(view, "max_io_ops_per_host", default, pos)


@dataclass(frozen=True, slots=True)
class NumInstancesOptions:
    max_instances_per_host: int = setting("filter_scheduler.max_instances_per_host")


class NumInstancesFilter(HostFilter):
    """Fewer than ``max_instances_per_host`` instances."""

    options_type = NumInstancesOptions
    options: NumInstancesOptions
    reason_code = "num_instances"

    def ceilings(self, view: HostView, pos: IntArray) -> IntArray:
        """The instance limit of each host at ``pos``."""
        return np.full(len(pos), self.options.max_instances_per_host, np.int64)

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        result: BoolArray = view.num_instances[pos] < self.ceilings(view, pos)
        return result

    def reason(self, view: HostView, pos: int) -> str:
        limit = int(self.ceilings(view, np.array([pos]))[0])
        return f"{int(view.num_instances[pos])} instances (limit {limit})"


class AggregateNumInstancesFilter(NumInstancesFilter):
    """NumInstancesFilter with the limit overridable by aggregate metadata
    ``max_instances_per_host``."""

    def ceilings(self, view: HostView, pos: IntArray) -> IntArray:
        default = self.options.max_instances_per_host
        return aggregate_limit(view, "max_instances_per_host", default, pos)
