"""Values derived from index rows, kept until the row changes.

Each index row carries a version (``IndexState.version``) that changes whenever anything
about the provider in it does (inventory, usage, traits, tree links, or another provider
taking the row). Versions come from one process-wide counter, so a ``(row, version)`` pair
names one content of one provider for the life of the process, across index rebuilds.

A ``RowCache`` remembers, per row, a value computed from that content (the JSON fragment of
a provider summary, say) with the version it was computed at. Callers look up the rows they
need with the versions they read under the index lock, compute only the stale ones, and
store them; everything else is reused. The cache has its own lock, so it is used outside
the index lock.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

I64 = np.int64
IntArray = npt.NDArray[np.int64]

_CLOCK = itertools.count(1)


def next_version() -> int:
    """A row version never handed out before in this process."""
    return next(_CLOCK)


class RowCache:
    """Per-row values tagged with the row version they were computed at."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: IntArray = np.zeros(0, I64)
        self._values: npt.NDArray[np.object_] = np.zeros(0, object)

    def _ensure(self, size: int) -> None:
        if size <= len(self._versions):
            return
        size = max(size, 2 * len(self._versions), 64)
        versions = np.zeros(size, I64)
        values = np.full(size, None, object)
        versions[: len(self._versions)] = self._versions
        values[: len(self._values)] = self._values
        self._versions, self._values = versions, values

    def lookup(
        self, rows: IntArray, versions: IntArray
    ) -> tuple[npt.NDArray[np.object_], IntArray]:
        """The cached values of ``rows`` (None where stale) and the positions (into
        ``rows``) whose cached value is missing or was computed at another version."""
        with self._lock:
            self._ensure(int(rows.max()) + 1 if len(rows) else 0)
            values = self._values[rows]
            stale: IntArray = np.flatnonzero(self._versions[rows] != versions)
        return values, stale

    def store(self, rows: IntArray, versions: IntArray, values: Sequence[object]) -> None:
        """Remember ``values`` for ``rows`` as computed at ``versions``."""
        if not len(rows):
            return
        with self._lock:
            self._ensure(int(rows.max()) + 1)
            self._values[rows] = values
            self._versions[rows] = versions
