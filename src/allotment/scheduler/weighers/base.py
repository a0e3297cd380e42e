"""The host weigher interface: raw weights as an array, normalized and combined by the
cycle exactly as Nova's weight handler does.

For each weigher Nova clamps raw weights to ``minval``/``maxval``, normalizes them to
[0, 1] over the hosts being weighed (using ``minval``/``maxval`` instead of the observed
bounds when set; all-equal weights become 0), multiplies by the weigher's multiplier — per
host, since aggregate metadata may override it — and sums over weighers.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

from allotment.config import Settings
from allotment.scheduler.snapshot import FloatArray, IntArray

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


class WeigherFailed(Exception):
    """A weigher cannot rank the hosts at all (e.g. a required metric is missing); the
    cycle turns it into an explained NoValidHost."""


class HostWeigher(abc.ABC):
    """Subclass, implement ``weigh`` and ``multiplier``, register under the
    ``allotment.weighers`` entry point group with the class name."""

    minval: ClassVar[float | None] = None
    maxval: ClassVar[float | None] = None
    # Aggregate metadata key overriding the multiplier for hosts in that aggregate (Nova's
    # ``get_weight_multiplier``: the minimum of the values found), None for no override.
    multiplier_key: ClassVar[str | None] = None
    # Nova negates this weigher's multiplier (BuildFailureWeigher).
    negate_multiplier: ClassVar[bool] = False
    # The raw weight of a host changes when an instance is placed on it.
    dynamic: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def name(self) -> str:
        return type(self).__name__

    def multiplier(self) -> float:
        """The configured multiplier (before aggregate overrides)."""
        return 1.0

    def applies(self, cycle: Cycle) -> bool:
        """False when every host would get the same weight (the weigher is skipped)."""
        return True

    @abc.abstractmethod
    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        """Raw weights of the hosts at candidate positions ``pos`` (higher wins)."""
