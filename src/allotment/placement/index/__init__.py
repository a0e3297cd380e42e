"""The in-memory capacity index and its change-sequence sync (see ``capacity`` and ``sync``)."""

from allotment.placement.index.capacity import IndexState
from allotment.placement.index.sync import CapacityIndex

__all__ = ["CapacityIndex", "IndexState"]
