"""Host weighers: rank the hosts that passed the filters. Built-ins carry Nova's names,
multipliers and normalization; plugins register under the ``allotment.weighers`` entry
point group."""

from allotment.scheduler.weighers.base import HostWeigher, WeigherFailed

__all__ = ["HostWeigher", "WeigherFailed"]
