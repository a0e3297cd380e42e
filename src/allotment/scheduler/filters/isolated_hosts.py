"""IsolatedHostsFilter: ``isolated_images`` run only on ``isolated_hosts``; with
``restrict_isolated_hosts_to_isolated_images`` (the default) isolated hosts run nothing
else."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from allotment.scheduler.filters.base import HostFilter
from allotment.scheduler.snapshot import BoolArray, IntArray

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


class IsolatedHostsFilter(HostFilter):
    run_filter_once_per_request = True

    def _host_isolated(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        isolated = set(self.settings.filter_scheduler.isolated_hosts)
        names = cycle.snapshot.hosts
        return np.fromiter((names[r] in isolated for r in cycle.rows[pos]), np.bool_, len(pos))

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        options = self.settings.filter_scheduler
        restrict = options.restrict_isolated_hosts_to_isolated_images
        if not options.isolated_images:
            if not restrict:
                return np.ones(len(pos), np.bool_)
            return ~self._host_isolated(cycle, pos)
        image = cycle.spec.image
        image_isolated = image is not None and image.id in options.isolated_images
        host_isolated = self._host_isolated(cycle, pos)
        if restrict:
            result: BoolArray = host_isolated == image_isolated
            return result
        if not image_isolated:
            return np.ones(len(pos), np.bool_)
        return host_isolated

    def reason(self, cycle: Cycle, pos: int) -> str:
        if cycle.host(pos) in self.settings.filter_scheduler.isolated_hosts:
            return "the host is isolated and the image is not one of the isolated images"
        return "the image is isolated and the host is not one of the isolated hosts"
