"""The host filter interface: a vectorized feasibility check.

A filter answers, for an array of candidate positions, which hosts can take the instance
being placed. The scheduling cycle decides which positions to ask about: all hosts still
alive for the first instance; for later instances of the same request only what can have
changed (nothing for ``run_filter_once_per_request`` filters, only the hosts that just
received an instance for ``host_local`` ones). That is what keeps a 100-instance request
on 10,000 hosts from costing 100 full passes.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

from allotment.config import Settings
from allotment.scheduler.snapshot import BoolArray, IntArray

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


class HostFilter(abc.ABC):
    """Subclass, implement ``passes``, register under the ``allotment.filters`` entry point
    group with the class name (Nova's filter names are the class names)."""

    # Nova's flag: the answer cannot change between the instances of one request.
    run_filter_once_per_request: ClassVar[bool] = False
    # The answer for a host depends only on that host and the request, so after an instance
    # is placed only the chosen host needs asking again. False: ask about every alive host.
    host_local: ClassVar[bool] = True
    # False when ``passes`` loops over hosts in Python; the NoValidHost explanation then
    # asks it only about the hosts that came closest.
    vectorized: ClassVar[bool] = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def name(self) -> str:
        return type(self).__name__

    def applies(self, cycle: Cycle) -> bool:
        """False when the request does not use this filter at all (it is then skipped)."""
        return True

    @abc.abstractmethod
    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        """For each candidate position in ``pos``, whether that host passes."""

    def reason(self, cycle: Cycle, pos: int) -> str:
        """Why the host at ``pos`` fails (shown in NoValidHost explanations)."""
        return f"rejected by {self.name}"
