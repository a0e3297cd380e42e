"""The host filter interface, defined by the framework (``allotment.scheduler.framework``).

A filter answers, for an array of candidate positions, which hosts can take the instance
being placed. The scheduling cycle decides which positions to ask about: all hosts still
alive for the first instance; for later instances of the same request only what can have
changed (nothing for ``run_filter_once_per_request`` filters, only the hosts that just
received an instance for ``host_local`` ones). That is what keeps a 100-instance request
on 10,000 hosts from costing 100 full passes.
"""

from allotment.scheduler.framework import HostFilter, Verdict

__all__ = ["HostFilter", "Verdict"]
