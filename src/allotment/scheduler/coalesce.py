"""Coalesced ``select_destinations``: the requests that reach one process while it is
deciding are decided together in the next cycle and claimed in one transaction (group
commit), each with its own spec, its own explanation and its own all-or-nothing outcome.

No timer and no window: a request that finds the process idle is decided at once, alone,
exactly as without coalescing. Requests arriving while a batch runs queue up; when the
batch is answered, the oldest of them leads the next batch, which takes the whole queue
(at most ``[scheduler] max_batch`` requests). In a batch:

- identical placement queries (same canonical ``ResourceRequest``) are asked once;
- requests are decided in arrival order, each against a ledger that holds what the earlier
  ones took and a cycle that has consumed their instances (free resources, instance and
  I/O counts, NUMA and PCI, server-group members), so the answer is the one the request
  would have had alone after them, and a server group's anti-affinity holds across it;
- a request that cannot place every instance gets its NoValidHost and takes nothing, so
  later requests may use what its other instances were offered;
- every placed instance of the batch is claimed in one placement call (one transaction,
  one commit). If that conflicts (another process took capacity, an instance already holds
  allocations), nothing was written and each decided request runs the per-request path
  (fresh candidates, a claim of its own, then instance by instance), in arrival order.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from allotment import log
from allotment.context import RequestContext
from allotment.scheduler.cycle.driver import PreparedRequest
from allotment.scheduler.cycle.ranking import HostChoice
from allotment.scheduler.decision import AskPlacement, Decision, Pick
from allotment.scheduler.pipeline import Pipeline
from allotment.scheduler.placement import (
    Claim,
    ClaimConflict,
    Offer,
    PlacementClient,
    PlacementRejected,
)
from allotment.scheduler.request import RequestSpec
from allotment.scheduler.resource_request import ResourceRequest
from allotment.scheduler.snapshot import HostSnapshot


class Decider(Protocol):
    """The per-request steps of ``SchedulerManager`` a batch is made of."""

    placement: PlacementClient
    pipeline: Pipeline

    def _start(
        self,
        ctx: RequestContext,
        prepared: PreparedRequest,
        snapshot: HostSnapshot,
        uuids: list[str],
        *,
        ask: AskPlacement | None = None,
        taken: Mapping[tuple[str, str], int] | None = None,
    ) -> Decision: ...

    def _place(self, decision: Decision, uuid: str, ranking: Iterable[HostChoice]) -> Pick: ...

    def _claim(self, decision: Decision, pick: Pick, spec: RequestSpec, user_id: str) -> Claim: ...

    def _decide_and_claim(
        self,
        ctx: RequestContext,
        prepared: PreparedRequest,
        snapshot: HostSnapshot,
        uuids: list[str],
        user_id: str,
    ) -> Decision: ...


LOG = logging.getLogger(__name__)


@dataclass(eq=False)
class Pending:
    """One ``select_destinations`` call waiting for (or being) its decision."""

    ctx: RequestContext
    prepared: PreparedRequest
    snapshot: HostSnapshot
    uuids: list[str]
    user_id: str
    decision: Decision | None = None
    error: BaseException | None = None
    done: bool = False

    def outcome(self) -> Decision:
        if self.error is not None:
            raise self.error
        assert self.decision is not None
        return self.decision


class SharedQueries:
    """A batch's allocation-candidate queries: each distinct query asked of placement
    once, its offer (or its rejection) handed to every request that asks it again."""

    def __init__(self, manager: Decider) -> None:
        self.placement = manager.placement
        self.asked = 0
        self._found: dict[Hashable, Offer | PlacementRejected] = {}

    def __call__(self, ctx: RequestContext, request: ResourceRequest) -> Offer:
        key = request.canonical()
        found = self._found.get(key)
        if found is None:
            self.asked += 1
            try:
                found = self.placement.allocation_candidates(ctx, request)
            except PlacementRejected as exc:
                found = exc
            self._found[key] = found
        if isinstance(found, PlacementRejected):
            raise PlacementRejected(found.message)
        return found


class Coalescer:
    """Queues concurrent decisions and runs them in batches, one batch at a time."""

    def __init__(self, manager: Decider, max_batch: int) -> None:
        self.manager = manager
        self.max_batch = max_batch
        self._turn = threading.Condition(threading.Lock())
        self._queue: deque[Pending] = deque()
        self._leading = False

    def waiting(self) -> int:
        """Requests queued for the next batch."""
        with self._turn:
            return len(self._queue)

    def decide(self, item: Pending) -> Decision:
        """``item``'s decision, its instances claimed; raises what it alone would raise."""
        with self._turn:
            self._queue.append(item)
            while not item.done and (self._leading or self._queue[0] is not item):
                self._turn.wait()
            if item.done:
                return item.outcome()
            self._leading = True
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
        try:
            self._run(batch)
        finally:
            with self._turn:
                for pending in batch:
                    if not pending.done:  # _run itself failed: nobody is left waiting
                        pending.error = pending.error or RuntimeError("the batch was not decided")
                        pending.done = True
                self._leading = False
                self._turn.notify_all()
        return item.outcome()

    def _run(self, batch: list[Pending]) -> None:
        manager = self.manager
        if len(batch) == 1:
            (item,) = batch
            with log.request_context(item.ctx):
                try:
                    item.decision = manager._decide_and_claim(
                        item.ctx, item.prepared, item.snapshot, item.uuids, item.user_id
                    )
                except Exception as exc:
                    item.error = exc
            item.done = True
            return
        ask = SharedQueries(manager)
        taken: dict[tuple[str, str], int] = {}
        placed: list[tuple[PreparedRequest, str, str]] = []
        decided: list[tuple[Pending, Decision]] = []
        for item in batch:
            with log.request_context(item.ctx):
                try:
                    decision = manager._start(
                        item.ctx, item.prepared, item.snapshot, item.uuids, ask=ask, taken=taken
                    )
                    for other, node, instance in placed:
                        decision.cycle.consume_other(node, other, instance)
                    for uuid in item.uuids:
                        manager._place(decision, uuid, decision.cycle.next_hosts(uuid))
                except Exception as exc:  # its picks never reached the batch's ledger
                    item.error = exc
                    item.done = True
                    continue
            for key, amount in decision.ledger.taken.items():
                taken[key] = taken.get(key, 0) + amount
            placed.extend(
                (item.prepared, p.choice.compute_node_uuid, p.instance_uuid) for p in decision.picks
            )
            decided.append((item, decision))
        if decided:
            self._claim(decided, ask.asked)

    def _claim(self, decided: list[tuple[Pending, Decision]], asked: int) -> None:
        manager = self.manager
        claims = [
            manager._claim(decision, pick, item.prepared.spec, item.user_id)
            for item, decision in decided
            for pick in decision.picks
        ]
        ctx = decided[0][0].ctx
        try:
            manager.placement.claim(ctx, claims)
        except ClaimConflict as exc:
            LOG.info(
                "claiming the %d instance(s) of %d coalesced requests at once conflicted "
                "(%s); each request claims on its own",
                len(claims),
                len(decided),
                exc.message,
            )
            for item, _ in decided:
                with log.request_context(item.ctx):
                    try:
                        fresh = manager.pipeline.prepare(
                            item.ctx, item.prepared.spec, item.snapshot
                        )
                        item.decision = manager._decide_and_claim(
                            item.ctx, fresh, item.snapshot, item.uuids, item.user_id
                        )
                    except Exception as error:
                        item.error = error
                item.done = True
            return
        except Exception as exc:  # placement unavailable: nothing known to be claimed
            for item, _ in decided:
                item.error = exc
                item.done = True
            return
        LOG.debug(
            "coalesced %d requests: %d candidate queries, %d instance(s) claimed in one call",
            len(decided),
            asked,
            len(claims),
        )
        for item, decision in decided:
            item.decision = decision
            item.done = True
