"""Ranking the hosts of one cycle: the weights of the alive hosts (``Scores``, Nova's
weight handler on arrays, kept current as instances are placed) and the order to try
hosts in for one instance (``Ranking``: ``host_subset_size``,
``shuffle_best_same_weighed_hosts``)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from allotment.scheduler.framework import FloatArray, HostView, HostWeigher, IntArray

# Hosts ranked eagerly; more are sorted only if the caller walks that far.
_RANK_HEAD = 16


@dataclass(frozen=True, slots=True)
class HostChoice:
    """A host as the caller needs it to claim and to answer."""

    position: int
    # Index into the caller's ``Candidates`` (to find the host's allocation requests).
    candidate: int
    host: str
    nodename: str
    compute_node_uuid: str
    weight: float


class Ranking:
    """The hosts for one instance, in the order to try them: the chosen host first (random
    among the best ``host_subset_size``), then the rest by descending weight."""

    def __init__(
        self,
        choice: Callable[[int, float], HostChoice],
        positions: IntArray,
        weights: FloatArray,
        subset_size: int,
        shuffle_best: bool,
        rng: random.Random,
    ) -> None:
        self._make_choice = choice
        self.positions = positions
        self.weights = weights
        self._head: list[int] | None = None
        if subset_size == 1 and not shuffle_best:
            # The common case needs only the best host; the order behind it is computed
            # if the caller walks on (its claim failed).
            self._chosen = int(np.argmax(weights))
            return
        count = min(len(positions), max(subset_size, _RANK_HEAD))
        head = self._order(count, rng if shuffle_best else None)
        subset = head[:subset_size]
        self._chosen = subset[rng.randrange(len(subset))] if len(subset) > 1 else subset[0]
        self._head = [self._chosen, *(i for i in head if i != self._chosen)]

    def _order(self, count: int, shuffle_with: random.Random | None) -> list[int]:
        """Indexes into ``positions`` of the ``count`` best hosts, best first (ties keep
        candidate order; with ``shuffle_with`` the hosts tied for best are shuffled)."""
        weights = self.weights
        head: list[int] = []
        if shuffle_with is not None:
            best = np.flatnonzero(weights == weights.max()).tolist()
            shuffle_with.shuffle(best)
            head = best
            if len(head) >= count:
                return head
        if count >= len(weights):
            order = np.lexsort((np.arange(len(weights)), -weights))
        else:
            top = np.argpartition(-weights, count - 1)[:count]
            order = top[np.lexsort((top, -weights[top]))]
        taken = set(head)
        return head + [int(i) for i in order if int(i) not in taken][: count - len(head)]

    @property
    def first(self) -> HostChoice:
        return self._choice(self._chosen)

    def _choice(self, index: int) -> HostChoice:
        return self._make_choice(int(self.positions[index]), float(self.weights[index]))

    def __len__(self) -> int:
        return len(self.positions)

    def __iter__(self) -> Iterator[HostChoice]:
        yield self._choice(self._chosen)
        if self._head is None:
            head = self._order(min(len(self.positions), _RANK_HEAD), None)
            self._head = [self._chosen, *(i for i in head if i != self._chosen)]
        for index in self._head[1:]:
            yield self._choice(index)
        if len(self._head) < len(self.positions):
            seen = set(self._head)
            rest = np.lexsort((np.arange(len(self.weights)), -self.weights))
            for index in rest.tolist():
                if index not in seen:
                    yield self._choice(index)


class Scores:
    """Weights of the alive hosts, kept current as hosts are consumed or drop out.

    Clamped raw weights live in a (weighers x alive hosts) matrix; placing an instance
    rewrites one column of the dynamic weighers and re-derives only their bounds.
    Weighers that rank every alive host the same and cannot change are left out: they
    add 0 to every host, as Nova's normalization makes them.
    """

    def __init__(self, view: HostView, weighers: Sequence[HostWeigher]) -> None:
        self.view = view
        active: list[tuple[HostWeigher, float | FloatArray]] = []
        for weigher in weighers:
            if not weigher.prepare(view):
                continue
            multiplier = view.multiplier(weigher)
            if not np.any(multiplier):
                continue
            active.append((weigher, multiplier))
        self.weighers = [w for w, _ in active]
        self.multipliers = [m for _, m in active]
        self.alive: IntArray = np.zeros(0, np.int64)
        # The weighers in the matrix (indexes into ``weighers``), and their matrix rows.
        self.rows: list[int] = []
        self.matrix = np.zeros((0, 0))
        self.mult_matrix: FloatArray | None = None
        self.low = np.zeros(0)
        self.high = np.zeros(0)
        self.stale = np.zeros(0, bool)

    def _clamp(self, weigher: HostWeigher, values: FloatArray) -> FloatArray:
        if weigher.minval is not None:
            values = np.maximum(values, weigher.minval)
        if weigher.maxval is not None:
            values = np.minimum(values, weigher.maxval)
        return values

    def _bounds(self, weigher: HostWeigher, values: FloatArray) -> tuple[float, float]:
        low = float(values.min()) if weigher.minval is None else float(weigher.minval)
        high = float(values.max()) if weigher.maxval is None else float(weigher.maxval)
        return low, high

    def reset(self, alive: IntArray) -> None:
        self.alive = alive
        rows: list[int] = []
        values: list[FloatArray] = []
        bounds: list[tuple[float, float]] = []
        for k, weigher in enumerate(self.weighers):
            raw = weigher.weigh(self.view, alive)
            clamped = self._clamp(weigher, raw)
            low, high = self._bounds(weigher, clamped)
            if high == low and not weigher.dynamic:
                continue
            rows.append(k)
            values.append(clamped)
            bounds.append((low, high))
        self.rows = rows
        self.matrix = np.vstack(values) if values else np.zeros((0, len(alive)))
        self.low = np.array([b[0] for b in bounds])
        self.high = np.array([b[1] for b in bounds])
        self.stale = np.zeros(len(rows), bool)
        self.mult_matrix = None
        if any(isinstance(self.multipliers[k], np.ndarray) for k in rows):
            self.mult_matrix = np.vstack(
                [np.broadcast_to(self.multipliers[k], (self.view.size,))[alive] for k in rows]
            )

    def drop(self, positions: IntArray) -> None:
        """Forget hosts that dropped out (cheaper than a reset when they are few)."""
        columns = np.searchsorted(self.alive, positions)
        self.alive = np.delete(self.alive, columns)
        self.matrix = np.delete(self.matrix, columns, axis=1)
        if self.mult_matrix is not None:
            self.mult_matrix = np.delete(self.mult_matrix, columns, axis=1)
        self.stale[:] = True

    def update(self, pos: int) -> None:
        column = int(np.searchsorted(self.alive, pos))
        if column >= len(self.alive) or self.alive[column] != pos:
            return
        at = np.array([pos])
        for row, k in enumerate(self.rows):
            weigher = self.weighers[k]
            if weigher.dynamic:
                value = weigher.weigh(self.view, at)
                self.matrix[row, column] = self._clamp(weigher, value)[0]
                self.stale[row] = True

    def _scale(self) -> FloatArray:
        """1 / (high - low) per matrix row (0 where every host weighs the same), after
        bringing the bounds of rows changed by consumption up to date."""
        for row in np.flatnonzero(self.stale).tolist():
            self.low[row], self.high[row] = self._bounds(
                self.weighers[self.rows[row]], self.matrix[row]
            )
        self.stale[:] = False
        span = self.high - self.low
        scale: FloatArray = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
        return scale

    def breakdown(self, positions: IntArray) -> dict[str, FloatArray]:
        """Each weigher's share of the weights of ``positions`` (alive hosts): normalized
        raw weight times multiplier; the shares add up to ``totals``."""
        if len(self.alive) <= 1:
            return {}
        scale = self._scale()
        columns = np.searchsorted(self.alive, positions)
        shares: dict[str, FloatArray] = {}
        for row, k in enumerate(self.rows):
            multiplier = self.multipliers[k]
            if isinstance(multiplier, np.ndarray):
                multiplier = multiplier[positions]
            normalized = (self.matrix[row, columns] - self.low[row]) * scale[row]
            shares[self.weighers[k].name] = multiplier * normalized
        return shares

    def totals(self) -> FloatArray:
        count = len(self.alive)
        if count <= 1 or not self.rows:
            return np.zeros(count)
        scale = self._scale()
        if self.mult_matrix is None:
            multipliers = np.array([self.multipliers[k] for k in self.rows], np.float64)
            coef = multipliers * scale
            totals: FloatArray = coef @ self.matrix - float(coef @ self.low)
            return totals
        totals = ((self.matrix - self.low[:, None]) * (self.mult_matrix * scale[:, None])).sum(
            axis=0
        )
        return totals
