"""IsolatedHostsFilter: ``isolated_images`` run only on ``isolated_hosts``; with
``restrict_isolated_hosts_to_isolated_images`` (the default) isolated hosts run nothing
else."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from allotment.scheduler.framework import BoolArray, HostFilter, HostView, IntArray, setting


@dataclass(frozen=True, slots=True)
class IsolatedHostsOptions:
    isolated_hosts: list[str] = setting("filter_scheduler.isolated_hosts")
    isolated_images: list[str] = setting("filter_scheduler.isolated_images")
    restrict: bool = setting("filter_scheduler.restrict_isolated_hosts_to_isolated_images")


class IsolatedHostsFilter(HostFilter):
    options_type = IsolatedHostsOptions
    options: IsolatedHostsOptions
    run_on_rebuild = True
    run_filter_once_per_request = True
    reason_code = "isolation"

    def _host_isolated(self, view: HostView, pos: IntArray) -> BoolArray:
        isolated = set(self.options.isolated_hosts)
        return np.fromiter((n in isolated for n in view.host_names(pos)), np.bool_, len(pos))

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        options = self.options
        restrict = options.restrict
        if not options.isolated_images:
            if not restrict:
                return np.ones(len(pos), np.bool_)
            return ~self._host_isolated(view, pos)
        image = view.spec.image
        image_isolated = image is not None and image.id in options.isolated_images
        host_isolated = self._host_isolated(view, pos)
        if restrict:
            result: BoolArray = host_isolated == image_isolated
            return result
        if not image_isolated:
            return np.ones(len(pos), np.bool_)
        return host_isolated

    def reason(self, view: HostView, pos: int) -> str:
        if view.host(pos) in self.options.isolated_hosts:
            return "the host is isolated and the image is not one of the isolated images"
        return "the image is isolated and the host is not one of the isolated hosts"
