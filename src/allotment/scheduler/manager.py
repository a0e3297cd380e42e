"""``select_destinations``: the decision, and the claims that make it true.

One request runs: the host snapshot (taken once), the request filters and the placement
query (``Pipeline.prepare``), allocation candidates from placement (one query however many
instances), then per instance filters, weighers and a pick on the cycle's arrays, each pick
consumed from the cycle's copy of the hosts before the next.

Claims, first optimistically: every instance's pick is checked against the capacity
placement reported (minus what earlier instances of the request took), and the whole batch
is claimed in one placement call (one SQL transaction, one durable commit). If that call
conflicts (another scheduler took the capacity since placement answered), the request
starts again from fresh candidates the way Nova does it: claim instance by instance,
moving to the next host on each conflict. Either way a request is all-or-nothing: claims
made for some instances are released when another cannot be placed. Capacity is always
checked by placement in SQL, so a stale view can cost a retry, never an over-commit.
With the embedded placement, one process decides and claims one request at a time (its
index shows each claim as it commits, and the work is CPU under one GIL anyway), so a
process never races itself; processes race each other, and settle it through conflicts.
With ``[scheduler] coalesce`` (the default) the requests that arrive while one is being
decided are decided together next, and claimed in one transaction (``coalesce.py``).

``explain`` runs the same decision without claiming and shows the funnel and the ranking.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import random
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from allotment import errors, log
from allotment.auth import policy
from allotment.config import Settings
from allotment.context import RequestContext
from allotment.metrics import Metrics
from allotment.scheduler.coalesce import Coalescer, Pending
from allotment.scheduler.cycle.driver import Cycle, PreparedRequest
from allotment.scheduler.cycle.ranking import HostChoice
from allotment.scheduler.decision import (
    STAGE_CAPACITY,
    STAGE_CLAIM,
    Alternates,
    AskPlacement,
    Decision,
    Ledger,
    Pick,
    Selection,
)
from allotment.scheduler.explain import Explanation, Funnel
from allotment.scheduler.host_manager import HostManager
from allotment.scheduler.pipeline import Pipeline
from allotment.scheduler.placement import (
    AllocationRequest,
    Candidates,
    Claim,
    ClaimConflict,
    Held,
    Offer,
    PlacementClient,
    PlacementFunnel,
    PlacementRejected,
)
from allotment.scheduler.request import RequestSpec
from allotment.scheduler.resource_request import ResourceRequest, no_such_host
from allotment.scheduler.snapshot import HostSnapshot

LOG = logging.getLogger(__name__)
MAX_INSTANCES = 1000
# Ranked hosts ``explain`` lists unless asked for another number.
EXPLAIN_HOSTS = 50
# Times a move's doubled-up claim is retried when the consumer changed meanwhile.
MOVE_CLAIM_ATTEMPTS = 3


def check_instance_uuids(values: Any) -> list[str]:
    """1 to ``MAX_INSTANCES`` distinct UUIDs, in canonical form (InvalidInput otherwise)."""
    if not isinstance(values, list) or not 1 <= len(values) <= MAX_INSTANCES:
        raise errors.InvalidInput(
            f"instance_uuids must be a list of 1 to {MAX_INSTANCES} instance UUIDs, one per "
            "instance to place."
        )
    canonical = []
    for index, value in enumerate(values):
        try:
            canonical.append(str(uuidlib.UUID(value)))
        except (ValueError, AttributeError, TypeError):
            raise errors.InvalidInput(
                f"instance_uuids[{index}]: {value!r} is not a UUID."
            ) from None
    if len(set(canonical)) != len(canonical):
        raise errors.InvalidInput("instance_uuids must not repeat an instance.")
    return canonical


def _checked(
    ctx: RequestContext, spec: RequestSpec, instance_uuids: Sequence[str]
) -> tuple[list[str], str]:
    """A call's instance uuids in canonical form and the user its claims are recorded for
    (InvalidInput otherwise)."""
    uuids = check_instance_uuids(list(instance_uuids))
    user_id = spec.user_id or ctx.user_id
    if not user_id:
        raise errors.InvalidInput(
            "request_spec.user_id is needed: claims are recorded for a project and a user."
        )
    return uuids, user_id


class SchedulerManager:
    """``select_destinations`` and ``explain`` over a host cache, a pipeline and a
    placement client."""

    def __init__(
        self,
        settings: Settings,
        host_manager: HostManager,
        pipeline: Pipeline,
        placement: PlacementClient,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics(settings)
        self.host_manager = host_manager
        self.pipeline = pipeline
        self.placement = placement
        self.clock = clock
        self.rng = rng or random.Random()
        # One request at a time from the query to the claim, when that never costs a
        # round trip (see PlacementClient.sees_own_claims)...
        self._deciding: contextlib.AbstractContextManager[object] = (
            threading.Lock() if placement.sees_own_claims else contextlib.nullcontext()
        )
        # ...or one batch of them at a time ([scheduler] coalesce).
        self.coalescer: Coalescer | None = (
            Coalescer(self, settings.scheduler.max_batch) if settings.scheduler.coalesce else None
        )

    # -- the public operations ----------------------------------------------------------

    def select_destinations(
        self,
        ctx: RequestContext,
        spec: RequestSpec,
        instance_uuids: Sequence[str],
        *,
        return_alternates: bool = False,
    ) -> list[list[Selection]]:
        """One list per instance, in order: the claimed host first, then (with
        ``return_alternates``) up to ``max_attempts - 1`` unclaimed alternates.

        Raises NoValidHost (409, explained), ServiceUnavailable (503) when placement
        cannot be used, InvalidInput (400) for a malformed request.
        """
        self.authorize(ctx, "scheduler:select_destinations")
        uuids, user_id = _checked(ctx, spec, instance_uuids)
        with log.request_context(ctx):
            started = time.perf_counter()
            try:
                snapshot = self.host_manager.snapshot()
                if spec.is_rebuild:
                    rebuilt = self._rebuild_check(spec, snapshot, uuids)
                    self.metrics.selected("selected", time.perf_counter() - started, 0)
                    return rebuilt
                prepared = self.pipeline.prepare(ctx, spec, snapshot)
                if self.coalescer is not None:
                    pending = Pending(ctx, prepared, snapshot, uuids, user_id, return_alternates)
                    decision, selections = self.coalescer.decide(pending)
                else:
                    with self._deciding:
                        decision = self._decide_and_claim(ctx, prepared, snapshot, uuids, user_id)
                    selections = self._selections(decision, return_alternates)
            except errors.NoValidHost as exc:
                self.no_valid_host(exc, started)
                raise
            except errors.AllotmentError as exc:
                self.metrics.selected(_outcome(exc), time.perf_counter() - started)
                raise
            except Exception:
                self.metrics.selected("error", time.perf_counter() - started)
                raise
            claimed = decision.picks
            self.metrics.selected("selected", time.perf_counter() - started, len(claimed))
            LOG.info(
                "placed %d instance(s) for project %s on %d host(s) in %.1f ms",
                len(uuids),
                spec.project_id,
                len({p.choice.compute_node_uuid for p in claimed}),
                (time.perf_counter() - started) * 1000,
            )
            LOG.debug(
                "instances %s -> %s", uuids, [(p.choice.host, p.choice.nodename) for p in claimed]
            )
            return selections

    def select_destinations_many(
        self,
        ctx: RequestContext,
        calls: Sequence[tuple[RequestSpec, Sequence[str]]],
    ) -> list[list[list[Selection]] | errors.AllotmentError]:
        """Many ``select_destinations`` calls (spec, instance uuids) decided in order as
        the coalescer decides concurrent calls arriving in that order, with one host
        snapshot, in the calling thread: what a caller holding many calls at once (the
        simulator) gets without a thread per call. Each call's answer is its selections
        (no alternates) or the domain error it alone would raise. Without
        ``[scheduler] coalesce`` the calls run one after the other."""
        self.authorize(ctx, "scheduler:select_destinations")
        if self.coalescer is None:
            return [self._one_of_many(ctx, spec, uuids) for spec, uuids in calls]
        answers: list[Pending | errors.AllotmentError] = []
        with log.request_context(ctx):
            started = time.perf_counter()
            snapshot = self.host_manager.snapshot()
            for spec, instance_uuids in calls:
                try:
                    uuids, user_id = _checked(ctx, spec, instance_uuids)
                    if spec.is_rebuild:
                        raise errors.InvalidInput("a rebuild check is not decided in a batch")
                    prepared = self.pipeline.prepare(ctx, spec, snapshot)
                    answers.append(Pending(ctx, prepared, snapshot, uuids, user_id))
                except errors.AllotmentError as exc:
                    answers.append(exc)
            self.coalescer.decide_all([a for a in answers if isinstance(a, Pending)])
            out = [self._settle(answer, started) for answer in answers]
            LOG.info(
                "decided %d calls together: %d placed, in %.1f ms",
                len(calls),
                sum(not isinstance(answer, errors.AllotmentError) for answer in out),
                (time.perf_counter() - started) * 1000,
            )
            return out

    def _settle(
        self, answer: Pending | errors.AllotmentError, started: float
    ) -> list[list[Selection]] | errors.AllotmentError:
        """A batched call's answer, counted (and a NoValidHost logged) as its own call."""
        if isinstance(answer, Pending):
            try:
                decision, selections = answer.outcome()
            except errors.AllotmentError as exc:
                answer = exc
            else:
                self.metrics.selected(
                    "selected", time.perf_counter() - started, len(decision.picks)
                )
                return selections
        if isinstance(answer, errors.NoValidHost):
            self.no_valid_host(answer, started)
        else:
            self.metrics.selected(_outcome(answer), time.perf_counter() - started)
        return answer

    def _one_of_many(
        self, ctx: RequestContext, spec: RequestSpec, uuids: Sequence[str]
    ) -> list[list[Selection]] | errors.AllotmentError:
        try:
            return self.select_destinations(ctx, spec, uuids)
        except errors.AllotmentError as exc:
            return exc

    def explain(
        self,
        ctx: RequestContext,
        spec: RequestSpec,
        instance_uuids: Sequence[str],
        *,
        hosts: int = EXPLAIN_HOSTS,
    ) -> dict[str, Any]:
        """The decision ``select_destinations`` would make now, claiming nothing: where
        each instance would go, the funnel, and the first ``hosts`` hosts of the ranking
        for the first instance with each weigher's share of their weight."""
        self.authorize(ctx, "scheduler:explain")
        uuids = check_instance_uuids(list(instance_uuids))
        with log.request_context(ctx):
            snapshot = self.host_manager.snapshot()
            ranked: list[dict[str, Any]] = []
            decision: Decision | None = None
            try:
                prepared = self.pipeline.prepare(ctx, spec, snapshot)
                funnel = prepared.funnel
                decision = self._start(ctx, prepared, snapshot, uuids)
                for index, uuid in enumerate(uuids):
                    ranking = decision.cycle.next_hosts(uuid)
                    if index == 0:
                        ranked = self._ranked(decision.cycle, ranking, hosts)
                    self._place(decision, uuid, ranking)
            except errors.NoValidHost as exc:
                return {
                    "result": "no_valid_host",
                    "explanation": exc.extra["explanation"],
                    "instances": _placed(decision),
                    "hosts": ranked,
                }
            summary = f"{len(uuids)} instance(s) can be placed."
            return {
                "result": "ok",
                "explanation": Explanation(summary, funnel, refused=False).to_dict(),
                "instances": _placed(decision),
                "hosts": ranked,
            }

    def no_valid_host(self, exc: errors.NoValidHost, started: float) -> None:
        """Count and log a NoValidHost once, at INFO: its one-line summary (which names no
        instance) as the message, the whole explanation as a structured field (a JSON log's
        ``explanation``; after the message in the text format). Every front door's refusal
        passes here."""
        explanation = exc.extra.get("explanation") or {}
        self.metrics.selected("no_valid_host", time.perf_counter() - started)
        self.metrics.refused(explanation)
        LOG.info("%s", exc.message, extra={"explanation": explanation})

    # -- deciding -------------------------------------------------------------------------

    def _rebuild_check(
        self, spec: RequestSpec, snapshot: HostSnapshot, uuids: list[str]
    ) -> list[list[Selection]]:
        """Nova's rebuild check (``_nova_check_type`` = rebuild): may the instance stay on
        its host with a new image? No request filters, no placement query, no claim: the
        filters run on the host the request is narrowed to (requested destination, forced
        host or node), and the answer is that host with nothing to claim."""
        funnel = Funnel()
        resources = ResourceRequest.from_spec(spec, self.settings)
        prepared = PreparedRequest(spec, resources, *self.pipeline.host_requests(spec), funnel)
        destination = spec.requested_destination
        host = node = None
        if destination is not None:
            host, node = destination.host, destination.node
        host = host or next(iter(spec.force_hosts), None)
        node = node or next(iter(spec.force_nodes), None)
        rows = snapshot.node_rows(host, node) if host or node else range(len(snapshot.uuids))
        if not rows:
            raise no_such_host(funnel, host, node)
        # Free amounts only weigh hosts against each other; placement is not asked.
        zeros = np.zeros(len(rows), np.float64)
        hosts = Candidates([snapshot.uuids[r] for r in rows], zeros, zeros.copy(), zeros.copy())
        cycle = self.pipeline.start(
            prepared, snapshot, hosts, uuids, now=self.clock(), rng=self.rng
        )
        selections = []
        for uuid in uuids:
            choice = next(iter(cycle.next_hosts(uuid)), None)
            if choice is None:
                raise cycle.no_valid_host()
            cycle.consume(choice.position, uuid)
            selections.append(
                [
                    Selection(
                        host=choice.host,
                        nodename=choice.nodename,
                        compute_node_uuid=choice.compute_node_uuid,
                        allocation_request=None,
                        allocation_request_version=None,
                        limits=cycle.limits(choice.position),
                    )
                ]
            )
        LOG.info("rebuild check passed on %s; nothing claimed", selections[0][0].host)
        return selections

    def authorize(self, ctx: RequestContext, rule: str) -> None:
        """Raise Forbidden unless ``ctx`` may ``rule`` (``scheduler:select_destinations`` or
        ``scheduler:explain``), checked before the body is looked at."""
        policy.authorize(ctx, rule)

    def _offer(
        self, ctx: RequestContext, prepared: PreparedRequest, ask: AskPlacement | None = None
    ) -> Offer:
        """Allocation candidates for the request (from ``ask``, placement by default); an
        explained NoValidHost when there are none."""
        request = prepared.resources
        try:
            offer = (ask or self.placement.allocation_candidates)(ctx, request)
        except PlacementRejected as exc:
            summary = f"No valid host was found: placement rejected the request ({exc.message})"
            raise self.pipeline.placement_failed(
                prepared, summary, error=exc.message, where=self.placement.where
            ) from None
        if offer.total_requests:

            def placement_counts() -> tuple[int | None, dict[str, Any]]:
                # Only if the request then fails: which constraint left out how many.
                try:
                    counted = self.placement.explain(ctx, request)
                except errors.AllotmentError as exc:
                    return None, {"method": f"counts not available: {exc.message}"}
                return counted.considered, counted.detail()

            prepared.funnel.placement_counts = placement_counts
            prepared.funnel.record(
                "placement",
                "placement",
                None,
                len(offer.hosts.uuids),
                hosts=len(offer.hosts.uuids),
                allocation_requests=offer.total_requests,
                limit=request.limit,
                where=self.placement.where,
            )
            return offer
        try:
            funnel = self.placement.explain(ctx, request)
        except errors.AllotmentError as exc:  # the answer stands without the counts
            funnel = PlacementFunnel(None, method=f"counts not available: {exc.message}")
        detail = funnel.detail()
        emptied = detail.get("eliminated_by")
        reason = "no provider has the resources, traits and aggregates requested"
        if emptied is None and funnel.constraints and funnel.constraints[-1].after:
            reason = (
                f"{funnel.constraints[-1].after} host(s) meet every constraint on its own but "
                "none meets them together (request groups that must use different or related "
                "providers, or that need more of one provider than it has)"
            )
        elif emptied is not None:
            group = f" (group {emptied['group']})" if emptied.get("group") else ""
            reason = (
                f"{emptied['constraint']} {emptied['value']}{group} left none of "
                f"{emptied['before']} hosts"
            )
        summary = f"No valid host was found: placement returned no candidates: {reason}"
        raise self.pipeline.placement_failed(
            prepared, summary, before=funnel.considered, where=self.placement.where, **detail
        )

    def _pick(self, cycle: Cycle, ledger: Ledger, uuid: str, ranking: Iterable[HostChoice]) -> Pick:
        """The first host of the ranking that still has room for an allocation request;
        hosts found full leave the cycle."""
        full: list[int] = []
        short: list[str] = []
        try:
            for choice in ranking:
                request = ledger.fitting(choice.candidate)
                if request is not None:
                    return Pick(uuid, choice, request)
                full.append(choice.position)
                short.append(ledger.short_of(choice.candidate))
        finally:
            if full:
                cycle.drop(
                    full,
                    STAGE_CAPACITY,
                    why=short,
                    reason="the instances placed before this one took the room placement offered",
                )
        raise cycle.no_valid_host()

    def _start(
        self,
        ctx: RequestContext,
        prepared: PreparedRequest,
        snapshot: HostSnapshot,
        uuids: list[str],
        *,
        ask: AskPlacement | None = None,
        taken: Mapping[tuple[str, str], int] | None = None,
    ) -> Decision:
        """Placement's offer, and a cycle over it for the request's instances (``ask`` and
        ``taken``: a batch's shared candidate queries and what its earlier requests took)."""
        offer = self._offer(ctx, prepared, ask)
        cycle = self.pipeline.start(
            prepared, snapshot, offer.hosts, uuids, now=self.clock(), rng=self.rng
        )
        return Decision(cycle, Ledger(offer, taken), [])

    def _place(self, decision: Decision, uuid: str, ranking: Iterable[HostChoice]) -> Pick:
        """Place one instance (unclaimed): the pick, consumed from the cycle and the
        ledger so the next instance sees it."""
        pick = self._pick(decision.cycle, decision.ledger, uuid, ranking)
        decision.ledger.take(pick.request)
        decision.cycle.consume(pick.choice.position, uuid)
        decision.picks.append(pick)
        return pick

    def _decide(
        self,
        ctx: RequestContext,
        prepared: PreparedRequest,
        snapshot: HostSnapshot,
        uuids: list[str],
    ) -> Decision:
        decision = self._start(ctx, prepared, snapshot, uuids)
        for uuid in uuids:
            self._place(decision, uuid, decision.cycle.next_hosts(uuid))
        return decision

    def _claim(self, decision: Decision, pick: Pick, spec: RequestSpec, user_id: str) -> Claim:
        return Claim(
            consumer=pick.instance_uuid,
            allocation_request=decision.ledger.request(pick.request),
            project_id=spec.project_id,
            user_id=user_id,
        )

    def _decide_and_claim(
        self,
        ctx: RequestContext,
        prepared: PreparedRequest,
        snapshot: HostSnapshot,
        uuids: list[str],
        user_id: str,
    ) -> Decision:
        spec = prepared.spec
        decision = self._decide(ctx, prepared, snapshot, uuids)
        claims = [self._claim(decision, pick, spec, user_id) for pick in decision.picks]
        try:
            # Nothing to release if this fails otherwise: placement wrote all or nothing
            # (after a timeout, which one is unknown, and the consumers may be others').
            self.placement.claim(ctx, claims)
            return decision
        except ClaimConflict as exc:
            self.metrics.conflict(exc.kind)
            self.metrics.retry("one_by_one")
            LOG.info(
                "claiming %d instance(s) at once conflicted (%s); claiming one by one on "
                "fresh candidates",
                len(claims),
                exc.message,
            )
        # The snapshot stays: only placement's view moved on. The funnel starts over.
        fresh = self.pipeline.prepare(ctx, spec, snapshot)
        return self._claim_one_by_one(ctx, fresh, snapshot, uuids, user_id)

    def _claim_one_by_one(
        self,
        ctx: RequestContext,
        prepared: PreparedRequest,
        snapshot: HostSnapshot,
        uuids: list[str],
        user_id: str,
    ) -> Decision:
        """Nova's loop: per instance, claim the best host, on conflict the next one."""
        decision = self._start(ctx, prepared, snapshot, uuids)
        cycle = decision.cycle
        try:
            for uuid in uuids:
                ranking = cycle.next_hosts(uuid)
                conflicted: list[int] = []
                while True:
                    pick = self._pick(cycle, decision.ledger, uuid, _skipping(ranking, conflicted))
                    claim = self._claim(decision, pick, prepared.spec, user_id)
                    try:
                        self._claim_as_nova(ctx, decision, claim)
                    except ClaimConflict as exc:
                        self.metrics.conflict(exc.kind)
                        self.metrics.retry("next_host")
                        LOG.info("claim on %s conflicted: %s", pick.choice.host, exc.message)
                        conflicted.append(pick.choice.position)
                        cycle.drop([pick.choice.position], STAGE_CLAIM, reason=exc.message)
                        continue
                    break
                decision.ledger.take(pick.request)
                cycle.consume(pick.choice.position, uuid)
                decision.picks.append(pick)
        except BaseException:
            self._release(ctx, [p.instance_uuid for p in decision.picks], decision.moved)
            raise
        return decision

    def _claim_as_nova(self, ctx: RequestContext, decision: Decision, claim: Claim) -> None:
        """Claim as Nova's ``claim_resources`` does: a consumer that already holds
        allocations is moving (an evacuation: its source allocations are not on a
        migration record), so it keeps them and adds the destination's, written under the
        consumer generation just read. Raises ClaimConflict (kind ``capacity``) when the
        destination has no room or the consumer kept changing."""
        try:
            self.placement.claim(ctx, [claim])
            return
        except ClaimConflict as exc:
            if exc.kind != "consumer":
                raise
            conflict = exc
        for _ in range(MOVE_CLAIM_ATTEMPTS):
            held = self.placement.held(ctx, claim.consumer)
            if held is None:  # released meanwhile: a new consumer again
                attempt = claim
            else:
                attempt = dataclasses.replace(
                    claim,
                    allocation_request=held.doubled_up(claim.allocation_request),
                    generation=held.generation,
                )
            try:
                self.placement.claim(ctx, [attempt])
            except ClaimConflict as exc:
                if exc.kind != "consumer":
                    raise
                conflict = exc
                continue
            if held is not None:
                decision.moved[claim.consumer] = held
                LOG.info(
                    "the instance already held allocations on %d provider(s) (a move): "
                    "claimed the destination next to them",
                    len(held.allocations),
                )
            return
        raise ClaimConflict(
            f"the instance's allocations kept changing while claiming: {conflict.message}",
            "capacity",
        )

    def _release(
        self, ctx: RequestContext, consumers: list[str], moved: Mapping[str, Held] | None = None
    ) -> None:
        """Drop the claims of a failed request; an instance that was moving gets back
        exactly what it held before."""
        moved = moved or {}
        for uuid, held in moved.items():
            if uuid not in consumers:
                continue
            restore = Claim(
                consumer=uuid,
                allocation_request=AllocationRequest(held.allocations, {}),
                project_id=held.project_id,
                user_id=held.user_id,
                generation=held.generation + 1,
            )
            try:
                self.placement.claim(ctx, [restore])
            except Exception:
                LOG.exception("could not give a moving instance back its allocations")
        consumers = [c for c in consumers if c not in moved]
        if not consumers:
            return
        try:
            self.placement.release(ctx, consumers)
            LOG.info("released the claims of %d instance(s) of a failed request", len(consumers))
        except Exception:
            LOG.exception(
                "could not release the claims of %d instance(s) of a failed request; their "
                "allocations stay in placement until deleted",
                len(consumers),
            )
            LOG.debug("unreleased claims: %s", consumers)

    # -- answering ------------------------------------------------------------------------

    def _selection(self, decision: Decision, choice: HostChoice, request: int) -> Selection:
        return Selection(
            host=choice.host,
            nodename=choice.nodename,
            compute_node_uuid=choice.compute_node_uuid,
            allocation_request=decision.ledger.request(request),
            limits=decision.cycle.limits(choice.position),
        )

    def _alternates(
        self,
        decision: Decision,
        selected: Sequence[int],
        extra: int = 0,
        beside: int | None = None,
    ) -> Alternates:
        """The cycle's best ``max_attempts - 1`` hosts (plus ``extra``) outside ``selected``
        for alternates, in the Nova cell of the host at ``beside`` when given. Hosts whose
        capacity the request used up have left the cycle already; those placement's offer
        no longer fits are kept as None."""
        count = self.settings.max_attempts - 1
        if count <= 0:
            return Alternates([])
        ranked: list[tuple[int, Selection | None]] = []
        for choice in decision.cycle.alternates(selected, count + extra, beside=beside):
            request = decision.ledger.fitting(choice.candidate)
            found = None if request is None else self._selection(decision, choice, request)
            ranked.append((choice.position, found))
        return Alternates(ranked)

    def _selections(
        self,
        decision: Decision,
        return_alternates: bool,
        shared: dict[str | None, Alternates] | None = None,
        extra: int = 0,
    ) -> list[list[Selection]]:
        """Each pick's selection, then (with ``return_alternates``) the alternates of its
        host's Nova cell, as Nova's ``_get_alternate_hosts`` keeps a build in its cell.
        Ranked once per cell; in ``shared`` when requests decided on one cycle rank them
        once (past the ``extra`` hosts any one of them leaves out)."""
        count = self.settings.max_attempts - 1 if return_alternates else 0
        chosen = [p.choice.position for p in decision.picks]
        by_cell = shared if shared is not None else {}

        def alternates(position: int) -> list[Selection]:
            if count <= 0:
                return []
            cell = decision.cycle.record(position).report.cell_uuid
            if cell not in by_cell:
                if shared is not None:
                    by_cell[cell] = self._alternates(decision, [], extra, beside=position)
                else:
                    by_cell[cell] = self._alternates(decision, chosen, beside=position)
            return by_cell[cell].excluding(chosen, count)

        return [
            [
                self._selection(decision, pick.choice, pick.request),
                *alternates(pick.choice.position),
            ]
            for pick in decision.picks
        ]

    def _ranked(
        self, cycle: Cycle, ranking: Iterable[HostChoice], count: int
    ) -> list[dict[str, Any]]:
        head = list(itertools.islice(ranking, count))
        shares = cycle.weight_breakdown([c.position for c in head])
        return [
            {
                "rank": rank,
                **_host_dict(choice),
                "weighers": {name: _rounded(float(v[i])) for name, v in shares.items()},
            }
            for rank, (i, choice) in enumerate(enumerate(head), start=1)
        ]


def _outcome(exc: errors.AllotmentError) -> str:
    """The metrics outcome of a refused select_destinations."""
    if isinstance(exc, errors.ServiceUnavailable):
        return "unavailable"
    if isinstance(exc, errors.Conflict):
        return "conflict"
    if isinstance(exc, errors.InvalidInput | errors.Forbidden | errors.Unauthorized):
        return "invalid"
    return "error"


def _placed(decision: Decision | None) -> list[dict[str, Any]]:
    """Where ``explain`` put each instance so far."""
    if decision is None:
        return []
    return [{"instance_uuid": p.instance_uuid, **_host_dict(p.choice)} for p in decision.picks]


def _skipping(ranking: Iterable[HostChoice], skipped: list[int]) -> Iterator[HostChoice]:
    """The ranking without hosts whose claim already conflicted for this instance."""
    return (c for c in ranking if c.position not in skipped)


def _host_dict(choice: HostChoice) -> dict[str, Any]:
    return {
        "host": choice.host,
        "nodename": choice.nodename,
        "compute_node_uuid": choice.compute_node_uuid,
        "weight": _rounded(choice.weight),
    }


def _rounded(value: float) -> float:
    return round(value, 6) + 0.0  # no -0.0 in answers
