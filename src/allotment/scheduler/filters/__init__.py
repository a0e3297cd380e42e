"""Host filters: feasibility checks run after placement. Built-ins carry Nova's names
and semantics; plugins register under the ``allotment.filters`` entry point group."""

from allotment.scheduler.filters.base import HostFilter

__all__ = ["HostFilter"]
