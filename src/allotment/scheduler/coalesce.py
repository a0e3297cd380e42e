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
  I/O counts, NUMA and PCI, server-group members) and no longer holds the hosts they
  filled (so those do not count in the weighers' normalization), so the answer is the one
  the request would have had alone after them, and a server group's anti-affinity holds
  across it;
- a request that cannot place every instance gets its NoValidHost and takes nothing, so
  later requests may use what its other instances were offered;
- 1-instance calls with the same spec are decided as the instances of one request (one
  cycle), and their alternates are ranked once on it, each call leaving out its own host;
- every placed instance of the batch is claimed in one placement call (one transaction,
  one commit). If that conflicts (another process took capacity, an instance already holds
  allocations), nothing was written and each decided request runs the per-request path
  (fresh candidates, a claim of its own, then instance by instance), in arrival order.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from allotment import log
from allotment.context import RequestContext
from allotment.scheduler.cycle.driver import PreparedRequest
from allotment.scheduler.cycle.ranking import HostChoice
from allotment.scheduler.decision import (
    STAGE_CAPACITY,
    Alternates,
    AskPlacement,
    Decision,
    Pick,
    Selection,
)
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

    def _selections(
        self,
        decision: Decision,
        return_alternates: bool,
        shared: dict[str | None, Alternates] | None = None,
        extra: int = 0,
    ) -> list[list[Selection]]: ...

    def _decide_and_claim(
        self,
        ctx: RequestContext,
        prepared: PreparedRequest,
        snapshot: HostSnapshot,
        uuids: list[str],
        user_id: str,
    ) -> Decision: ...


LOG = logging.getLogger(__name__)
# How often ``decide_all`` looks whether concurrent callers' batches are done.
IDLE_POLL_S = 0.01


@dataclass(eq=False)
class Pending:
    """One ``select_destinations`` call waiting for (or being) its decision."""

    ctx: RequestContext
    prepared: PreparedRequest
    snapshot: HostSnapshot
    uuids: list[str]
    user_id: str
    return_alternates: bool = False
    decision: Decision | None = None
    selections: list[list[Selection]] | None = None
    error: BaseException | None = None
    done: bool = False
    # Notified (under the coalescer's lock) when the call is answered or leads next.
    wake: threading.Condition | None = None

    def outcome(self) -> tuple[Decision, list[list[Selection]]]:
        if self.error is not None:
            raise self.error
        assert self.decision is not None and self.selections is not None
        return self.decision, self.selections

    def joins(self, first: Pending) -> bool:
        """Whether this call can be decided in ``first``'s cycle, as one more instance of
        it: one instance each, the same host snapshot, and the same spec but for the
        instance uuid Nova's RequestSpec carries."""
        if not (len(self.uuids) == len(first.uuids) == 1 and self.snapshot is first.snapshot):
            return False
        mine, theirs = self.prepared.spec, first.prepared.spec
        if mine.instance_uuid != theirs.instance_uuid:
            mine = mine.model_copy(update={"instance_uuid": theirs.instance_uuid})
        return mine == theirs


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
    """Queues concurrent decisions and runs them in batches, one batch at a time.

    Each waiting call sleeps on a condition of its own (over the one lock), so a batch's
    end wakes only the calls it answered and the next leader, not every queued call."""

    def __init__(self, manager: Decider, max_batch: int) -> None:
        self.manager = manager
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: deque[Pending] = deque()
        self._leading = False

    def waiting(self) -> int:
        """Requests queued for the next batch."""
        with self._lock:
            return len(self._queue)

    def decide(self, item: Pending) -> tuple[Decision, list[list[Selection]]]:
        """``item``'s decision, its instances claimed, and its answer; raises what it alone
        would raise."""
        with self._lock:
            item.wake = threading.Condition(self._lock)
            self._queue.append(item)
            while not item.done and (self._leading or self._queue[0] is not item):
                item.wake.wait()
            if item.done:
                return item.outcome()
            self._leading = True
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
        try:
            self._run(batch)
        finally:
            with self._lock:
                for pending in batch:
                    if not pending.done:  # _run itself failed: nobody is left waiting
                        pending.error = pending.error or RuntimeError("the batch was not decided")
                        pending.done = True
                    if pending.wake is not None:
                        pending.wake.notify()
                self._leading = False
                if self._queue:
                    next_leader = self._queue[0].wake
                    assert next_leader is not None
                    next_leader.notify()
        return item.outcome()

    def decide_all(self, items: Sequence[Pending]) -> None:
        """Decide ``items`` in order, in the calling thread, as if they had all queued at
        once in that order (batches of ``max_batch``): for a caller that holds many calls
        at once (the simulator's replay) and would otherwise need a thread per call.
        Afterwards each item's ``outcome()`` is its answer."""
        idle = threading.Condition(self._lock)
        with self._lock:
            # Concurrent callers wake only each other: look again now and then until no
            # batch runs and none is queued.
            while self._leading or self._queue:
                idle.wait(IDLE_POLL_S)
            self._leading = True
        try:
            for start in range(0, len(items), self.max_batch):
                self._run(list(items[start : start + self.max_batch]))
        finally:
            with self._lock:
                for pending in items:
                    if not pending.done:  # _run itself failed
                        pending.error = pending.error or RuntimeError("the batch was not decided")
                        pending.done = True
                self._leading = False
                if self._queue:
                    next_leader = self._queue[0].wake
                    assert next_leader is not None
                    next_leader.notify()

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
            self._answer(batch)
            return
        run = _Batch(manager)
        start = 0
        while start < len(batch):
            first = batch[start]
            end = start + 1
            while end < len(batch) and batch[end].joins(first):
                end += 1
            if end - start > 1:
                for item in run.decide_together(batch[start:end]):
                    run.decide(item, fresh=True)
            else:
                run.decide(first)
            start = end
        if run.decided:
            self._claim(run.decided, run.ask.asked)
        self._answer(batch)

    def _answer(self, batch: list[Pending]) -> None:
        """Each decided call's selections (alternates included), here in the one thread
        that decides. Calls decided together share a cycle, left as their last pick left
        it: its alternates are ranked once for all of them, each call then leaving out
        its own host."""
        # Per shared cycle: how many calls answer from it, and the most hosts one chose.
        sharing: dict[int, tuple[int, int]] = {}
        for item in batch:
            if item.decision is not None and item.error is None and item.return_alternates:
                key = id(item.decision.cycle)
                calls, chosen = sharing.get(key, (0, 0))
                sharing[key] = (calls + 1, max(chosen, len(item.decision.picks)))
        # Per shared cycle, its alternates ranked once per Nova cell.
        shared: dict[int, dict[str | None, Alternates]] = {}
        for item in batch:
            if item.decision is not None and item.error is None:
                decision = item.decision
                with log.request_context(item.ctx):
                    try:
                        alternates = None
                        calls, chosen = sharing.get(id(decision.cycle), (0, 0))
                        if calls > 1:
                            # Ranked past the hosts any one of them leaves out.
                            alternates = shared.setdefault(id(decision.cycle), {})
                        item.selections = self.manager._selections(
                            decision, item.return_alternates, alternates, chosen
                        )
                    except Exception as exc:
                        item.error = exc
            item.done = True

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
                item.decision = None
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
            return
        except Exception as exc:  # placement unavailable: nothing known to be claimed
            for item, _ in decided:
                item.error = exc
            return
        LOG.debug(
            "coalesced %d requests: %d candidate queries, %d instance(s) claimed in one call",
            len(decided),
            asked,
            len(claims),
        )
        for item, decision in decided:
            item.decision = decision


class _Batch:
    """The decisions of one batch, in arrival order, before their claim: the shared
    queries, what the decided calls took, and where their instances went."""

    def __init__(self, manager: Decider) -> None:
        self.manager = manager
        self.ask = SharedQueries(manager)
        self.taken: dict[tuple[str, str], int] = {}
        self.placed: list[tuple[PreparedRequest, str, str]] = []
        self.decided: list[tuple[Pending, Decision]] = []

    def _start(self, item: Pending, uuids: list[str]) -> Decision:
        decision = self.manager._start(
            item.ctx, item.prepared, item.snapshot, uuids, ask=self.ask, taken=self.taken
        )
        cycle = decision.cycle
        for other, node, instance in self.placed:
            cycle.consume_other(node, other, instance)
        # Alone after the earlier calls, this one's candidates would not hold the hosts
        # they filled: out before weighing, so they do not stretch the weighers'
        # normalization either. Only the hosts the batch placed on can have filled.
        touched = cycle.positions_of_nodes(sorted({node for _, node, _ in self.placed}))
        ledger = decision.ledger
        hosts = {int(p): int(cycle.candidate_index[p]) for p in touched}
        full = [p for p, host in hosts.items() if ledger.fitting(host) is None]
        if full:
            cycle.drop(full, STAGE_CAPACITY, why=[ledger.short_of(hosts[p]) for p in full])
        return decision

    def _keep(self, item: Pending, decision: Decision) -> None:
        item.decision = decision
        self.placed.extend(
            (item.prepared, p.choice.compute_node_uuid, p.instance_uuid) for p in decision.picks
        )
        self.decided.append((item, decision))

    def _add(self, taken: Mapping[tuple[str, str], int]) -> None:
        for key, amount in taken.items():
            self.taken[key] = self.taken.get(key, 0) + amount

    def decide(self, item: Pending, *, fresh: bool = False) -> None:
        """One call on its own cycle; a failure takes nothing from the batch."""
        manager = self.manager
        with log.request_context(item.ctx):
            try:
                if fresh:  # its funnel was written by a cohort's attempt
                    item.prepared = manager.pipeline.prepare(
                        item.ctx, item.prepared.spec, item.snapshot
                    )
                decision = self._start(item, item.uuids)
                for uuid in item.uuids:
                    manager._place(decision, uuid, decision.cycle.next_hosts(uuid))
            except Exception as exc:
                item.error = exc
                return
        self._add(decision.ledger.taken)
        self._keep(item, decision)

    def decide_together(self, cohort: list[Pending]) -> list[Pending]:
        """Calls that ``join`` the first, decided as the instances of one request (one
        cycle, one offer): what a multi-instance request costs. Returns the calls left
        undecided once a pick fails, to be decided on their own for their own
        explanation."""
        manager = self.manager
        first = cohort[0]
        with log.request_context(first.ctx):
            try:
                decision = self._start(first, [item.uuids[0] for item in cohort])
            except Exception:
                return cohort
            picks = 0
            for item in cohort:
                (uuid,) = item.uuids
                try:
                    manager._place(decision, uuid, decision.cycle.next_hosts(uuid))
                except Exception:
                    break
                picks += 1
        self._add(decision.ledger.taken)
        for item, pick in zip(cohort, decision.picks, strict=False):
            self._keep(item, Decision(decision.cycle, decision.ledger, [pick]))
        return cohort[picks:]
