"""Server-group (anti-)affinity, same/different host hints, and CIDR affinity."""

from __future__ import annotations

import ipaddress

import numpy as np

from allotment.errors import InvalidInput
from allotment.scheduler.framework import BoolArray, HostFilter, HostView, IntArray


class ServerGroupAntiAffinityFilter(HostFilter):
    """For an ``anti-affinity`` group: fewer than ``max_server_per_host`` (default 1) group
    members on the host. Members placed earlier in the same request count."""

    reason_code = "anti_affinity"

    def prepare(self, view: HostView) -> bool:
        group = view.spec.instance_group
        return group is not None and group.policy == "anti-affinity"

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        group = view.spec.instance_group
        assert group is not None
        ok: BoolArray = view.member_counts()[pos] < group.max_server_per_host
        if view.instance_uuid is not None:
            # A move may re-check the host the instance is on; that host stays valid.
            ok |= np.isin(pos, view.positions_with_instances([view.instance_uuid]))
        return ok

    def reason(self, view: HostView, pos: int) -> str:
        group = view.spec.instance_group
        limit = group.max_server_per_host if group else 1
        count = int(view.member_counts()[pos])
        return f"{count} member(s) of the anti-affinity group already here (limit {limit})"


class ServerGroupAffinityFilter(HostFilter):
    """For an ``affinity`` group that has hosts: only those hosts."""

    # Placing the first member decides the host for all the others.
    host_local = False
    reason_code = "affinity"

    def prepare(self, view: HostView) -> bool:
        group = view.spec.instance_group
        return group is not None and group.policy == "affinity"

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        if not view.group_hosts:
            return np.ones(len(pos), np.bool_)
        result: BoolArray = view.in_group_hosts()[pos]
        return result

    def reason(self, view: HostView, pos: int) -> str:
        return f"the affinity group's members run on {sorted(view.group_hosts)}"


class SameHostFilter(HostFilter):
    """Hint ``same_host``: hosts running at least one of the given instances."""

    run_filter_once_per_request = True
    reason_code = "same_host"

    def prepare(self, view: HostView) -> bool:
        return bool(view.spec.hint_list("same_host"))

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        wanted = view.positions_with_instances(view.spec.hint_list("same_host"))
        return np.isin(pos, wanted)

    def reason(self, view: HostView, pos: int) -> str:
        return "runs none of the instances named in the same_host hint"


class DifferentHostFilter(HostFilter):
    """Hint ``different_host``: hosts running none of the given instances."""

    run_filter_once_per_request = True
    reason_code = "different_host"

    def prepare(self, view: HostView) -> bool:
        return bool(view.spec.hint_list("different_host"))

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        avoided = view.positions_with_instances(view.spec.hint_list("different_host"))
        return ~np.isin(pos, avoided)

    def reason(self, view: HostView, pos: int) -> str:
        return "runs an instance named in the different_host hint"


class SimpleCIDRAffinityFilter(HostFilter):
    """Hints ``build_near_host_ip`` and ``cidr`` (default ``/24``): hosts whose IP is in
    that network."""

    run_filter_once_per_request = True
    reason_code = "cidr"

    def prepare(self, view: HostView) -> bool:
        return bool(view.spec.hint("build_near_host_ip"))

    def _network(self, view: HostView) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        address = str(view.spec.hint("build_near_host_ip"))
        cidr = str(view.spec.hint("cidr", "/24"))
        try:
            return ipaddress.ip_network(address + cidr, strict=False)
        except ValueError:
            raise InvalidInput(
                f"Scheduler hints build_near_host_ip={address!r} cidr={cidr!r} do not form "
                "a network"
            ) from None

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        network = self._network(view)
        if network.version == 4:
            ips = view.column("ipv4", pos)
            mask = int(network.netmask)
            result: BoolArray = (ips >= 0) & ((ips & mask) == int(network.network_address))
            return result
        addresses = [view.record(int(p)).report.host_ip for p in pos.tolist()]
        return np.fromiter(
            (a is not None and ipaddress.ip_address(a) in network for a in addresses),
            bool,
            len(pos),
        )

    def reason(self, view: HostView, pos: int) -> str:
        return f"host IP {view.record(pos).report.host_ip} is not in {self._network(view)}"
