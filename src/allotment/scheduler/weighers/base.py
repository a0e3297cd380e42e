"""The host weigher interface, defined by the framework (``allotment.scheduler.framework``):
raw weights as an array, normalized and combined by the cycle exactly as Nova's weight
handler does.

For each weigher Nova clamps raw weights to ``minval``/``maxval``, normalizes them to
[0, 1] over the hosts being weighed (using ``minval``/``maxval`` instead of the observed
bounds when set; all-equal weights become 0), multiplies by the weigher's multiplier — per
host, since aggregate metadata may override it — and sums over weighers.
"""

from allotment.scheduler.framework import HostWeigher, WeigherFailed

__all__ = ["HostWeigher", "WeigherFailed"]
