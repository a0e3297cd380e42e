"""One scheduling cycle: the hosts placement offered for a request, filtered and weighed
for each instance in turn, with each placed instance consumed from the hosts' state.

This is Nova's ``_schedule`` loop without the claims: ``next_hosts`` does what
``_get_sorted_hosts`` does (filters, weighers, ``host_subset_size``,
``shuffle_best_same_weighed_hosts``), ``consume`` what ``_consume_selected_host`` does,
``alternates`` what ``_get_alternate_hosts`` does. The caller owns claiming: it walks the
returned ranking, claims in placement, and calls ``consume`` for the host that took it.

The per-host state lives in the view (``cycle.view``), the weights in ``cycle.ranking``;
filters report a reason code for each host they reject, tallied per filter in the funnel.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from allotment.config import Settings
from allotment.errors import NoValidHost
from allotment.scheduler import numa as numa_fit
from allotment.scheduler import pci
from allotment.scheduler.cycle.ranking import HostChoice, Ranking, Scores
from allotment.scheduler.cycle.view import CycleView
from allotment.scheduler.explain import (
    CLOSEST_MISSES,
    Explanation,
    Funnel,
    Miss,
    Rejection,
    with_tally,
)
from allotment.scheduler.framework import HostFilter, HostWeigher, Verdict, WeigherFailed
from allotment.scheduler.numa import NumaRequest
from allotment.scheduler.pci import PciRequest
from allotment.scheduler.placement import Candidates
from allotment.scheduler.request import RequestSpec
from allotment.scheduler.resource_request import ResourceRequest
from allotment.scheduler.snapshot import BoolArray, FloatArray, HostSnapshot, IntArray

# Hosts whose per-host-Python filters are asked about when explaining a NoValidHost.
_EXPLAIN_SLOW_FILTERS_ON = 256


def _present(sorted_values: IntArray, wanted: IntArray) -> BoolArray:
    """Which of ``wanted`` occur in ``sorted_values`` (a binary search each)."""
    if not len(sorted_values):
        return np.zeros(len(wanted), bool)
    at = np.minimum(np.searchsorted(sorted_values, wanted), len(sorted_values) - 1)
    found: BoolArray = sorted_values[at] == wanted
    return found


def _verdict(answer: BoolArray | Verdict) -> tuple[BoolArray, Verdict]:
    """The mask of a filter's answer, and the answer as a verdict."""
    if isinstance(answer, Verdict):
        return answer.passed, answer
    return answer, Verdict(answer, {})


def _tally(host_filter: HostFilter, verdict: Verdict) -> dict[str, int]:
    """How many hosts the verdict rejected, per reason code (a host counted once, under
    the first code that names it; the rest under the filter's own code)."""
    rejected = ~verdict.passed
    left = int(np.count_nonzero(rejected))
    counts: dict[str, int] = {}
    if not left:
        return counts
    for code, mask in verdict.reasons.items():
        hit = rejected & mask
        count = int(np.count_nonzero(hit))
        if count:
            counts[code] = counts.get(code, 0) + count
            rejected = rejected & ~mask
            left -= count
            if not left:
                return counts
    counts[host_filter.reason_code] = counts.get(host_filter.reason_code, 0) + left
    return counts


@dataclass
class PreparedRequest:
    """A request after translation and request filters, ready for placement; built by
    ``Pipeline.prepare``."""

    spec: RequestSpec
    resources: ResourceRequest
    numa: NumaRequest | None
    pci: list[PciRequest]
    funnel: Funnel = field(default_factory=Funnel)


class Cycle(CycleView):
    """Filters and weighs the candidates of one request, one instance at a time."""

    def __init__(
        self,
        settings: Settings,
        filters: Sequence[HostFilter],
        weighers: Sequence[HostWeigher],
        prepared: PreparedRequest,
        snapshot: HostSnapshot,
        candidates: Candidates,
        instance_uuids: Sequence[str] = (),
        *,
        now: float,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            prepared.spec,
            prepared.numa,
            prepared.pci,
            snapshot,
            candidates.uuids,
            candidates.free_ram_mb,
            candidates.free_disk_mb,
            candidates.free_vcpus,
            instance_uuids,
            now,
        )
        self.settings = settings
        self.funnel = prepared.funnel
        self.rng = rng or random.Random()
        self.index = -1
        self._dirty: list[int] = []
        self._removed: IntArray | None = None
        # Hosts taken out of the request after passing the filters: position -> (stage,
        # why), for the closest misses.
        self._dropped: dict[int, tuple[str, str]] = {}
        self._alive: IntArray = np.arange(self.size)
        self._filtered: IntArray = self._alive
        if self.spec.is_rebuild:
            # Nova's rebuild check asks only the filters about the image, not about the
            # usage of the host the instance is already on.
            filters = [f for f in filters if f.run_on_rebuild]
        self._filters = [f for f in filters if f.prepare(self)]
        self._skip_filters = bool(
            (self.spec.force_hosts or self.spec.force_nodes)
            and not self.spec.hint("_nova_check_type")
        )
        self._scores = Scores(self, weighers)
        known = self.known
        unknown = []
        if self.size < len(known):
            unknown = [candidates.uuids[i] for i in np.flatnonzero(~known)[:CLOSEST_MISSES]]
        detail: dict[str, Any] = {"unknown": unknown} if unknown else {}
        self.funnel.record("host_records", "hosts", len(known), self.size, **detail)

    # -- the cycle ---------------------------------------------------------------------

    def next_hosts(self, instance_uuid: str | None = None) -> Ranking:
        """Filter and weigh for the next instance; raises NoValidHost (explained) when no
        host is left."""
        self.index += 1
        self.instance_uuid = instance_uuid
        if self.index == 0:
            self._alive = self._pre_filter(self._alive)
        if not self._skip_filters:
            self._alive = self._filter(self._alive)
        if not len(self._alive):
            raise self.no_valid_host()
        return self._rank()

    def _rank(self) -> Ranking:
        # Alive hosts only ever drop out, so an unchanged count means an unchanged set.
        try:
            self._sync_scores()
            weights = self._scores.totals()
        except WeigherFailed as exc:
            self.funnel.record(
                "weighers",
                "weigher",
                len(self._alive),
                0,
                instance=self.index + 1,
                error=str(exc),
            )
            raise self.no_valid_host() from None
        options = self.settings.filter_scheduler
        return Ranking(
            self.choice,
            self._alive,
            weights,
            options.host_subset_size,
            options.shuffle_best_same_weighed_hosts,
            self.rng,
        )

    def _sync_scores(self) -> None:
        """Bring the weights to the alive hosts (alive hosts only ever drop out, so an
        unchanged count is an unchanged set)."""
        scores = self._scores
        if len(scores.alive) == len(self._alive):
            return
        removed = self._removed
        if removed is not None and len(scores.alive) - len(removed) == len(self._alive):
            scores.drop(removed)
        else:
            scores.reset(self._alive)

    def _pre_filter(self, alive: IntArray) -> IntArray:
        """Nova's host pre-selection: requested destination, ignored and forced hosts."""
        spec, snap = self.spec, self.snapshot
        destination = spec.requested_destination
        if destination is not None and (destination.host or destination.node):
            wanted = set(snap.node_rows(destination.host, destination.node))
            keep = np.fromiter((int(r) in wanted for r in self.rows[alive]), np.bool_, len(alive))
            alive = self._stage("requested_destination", alive, keep)
        if spec.ignore_hosts:
            ignored = {h.lower() for h in spec.ignore_hosts}
            keep = np.fromiter(
                (snap.hosts[r].lower() not in ignored for r in self.rows[alive]),
                np.bool_,
                len(alive),
            )
            alive = self._stage("ignore_hosts", alive, keep)
        if spec.force_hosts:
            forced = {h.lower() for h in spec.force_hosts}
            keep = np.fromiter(
                (snap.hosts[r].lower() in forced for r in self.rows[alive]), np.bool_, len(alive)
            )
            alive = self._stage("force_hosts", alive, keep)
        if spec.force_nodes:
            nodes = set(spec.force_nodes)
            keep = np.fromiter(
                (snap.nodenames[r] in nodes for r in self.rows[alive]), np.bool_, len(alive)
            )
            alive = self._stage("force_nodes", alive, keep)
        zone = spec.availability_zone
        if zone and not self.settings.scheduler.query_placement_for_availability_zone:
            keep = self.availability_zone_mask(zone, alive)
            alive = self._stage("availability_zone", alive, keep)
        self._filtered = alive
        return alive

    def availability_zone_mask(self, zone: str, pos: IntArray) -> BoolArray:
        """Hosts in ``zone`` (hosts in no zone aggregate are in the default zone)."""
        default = self.settings.scheduler.default_availability_zone

        def zones(code: int) -> frozenset[str]:
            found = self.snapshot.aggregate_values(code, "availability_zone")
            return frozenset(found or {default})

        return self.per_aggregate_set(lambda code: zone in zones(code), pos)

    def _stage(self, name: str, alive: IntArray, keep: BoolArray) -> IntArray:
        kept: IntArray = alive[keep]
        self.funnel.record(name, "hosts", len(alive), len(kept))
        return kept

    def _filter(self, alive: IntArray) -> IntArray:
        first = self.index == 0
        dirty = np.array(sorted(set(self._dirty)), np.int64)
        self._dirty.clear()
        before_all = len(alive)
        removed: list[IntArray] = []
        for host_filter in self._filters:
            if not len(alive):
                break
            if not first:
                if host_filter.run_filter_once_per_request:
                    continue
                if host_filter.host_local:
                    check = dirty[_present(alive, dirty)]
                    if not len(check):
                        continue
                    mask, verdict = _verdict(host_filter.passes(self, check))
                    rejected = check[~mask]
                    if len(rejected):
                        before = len(alive)
                        alive = np.delete(alive, np.searchsorted(alive, rejected))
                        removed.append(rejected)
                        self._record_filter(host_filter, before, len(alive), verdict)
                    continue
            before = len(alive)
            mask, verdict = _verdict(host_filter.passes(self, alive))
            if not first and not mask.all():
                removed.append(alive[~mask])
            alive = alive[mask]
            if first or len(alive) != before:
                self._record_filter(host_filter, before, len(alive), verdict)
        # What later instances dropped, so the weights can drop those columns only.
        self._removed = np.concatenate(removed) if removed and len(alive) < before_all else None
        return alive

    def _record_filter(
        self, host_filter: HostFilter, before: int, after: int, verdict: Verdict
    ) -> None:
        """One filter's line of the funnel: how many hosts it saw and kept, and why."""
        self.funnel.record(
            host_filter.name,
            "filter",
            before,
            after,
            instance=self.index + 1,
            reasons=_tally(host_filter, verdict),
        )

    def consume(self, pos: int, instance_uuid: str | None = None) -> None:
        """Account for an instance placed on the host at ``pos`` (Nova's
        ``consume_from_request`` plus the server-group bookkeeping)."""
        self._account(pos, self.spec, self.numa_request, self.pci_requests)
        if self.spec.instance_group is not None:
            self._join_group(pos, instance_uuid)
        self._dirty.append(pos)
        self._scores.update(pos)

    def consume_other(
        self, compute_node_uuid: str, other: PreparedRequest, instance_uuid: str
    ) -> None:
        """Account for an instance of another request decided before this one in the same
        batch (``SchedulerManager`` coalescing): what this cycle would have seen had that
        request run first, as Nova's shared host states do, and a member of this request's
        server group on that host when the instance is one."""
        positions = self.positions_of_nodes([compute_node_uuid])
        if not len(positions):
            return
        pos = int(positions[0])
        self._account(pos, other.spec, other.numa, other.pci)
        group = self.spec.instance_group
        theirs = other.spec.instance_group
        if group is not None and theirs is not None and group.uuid and theirs.uuid == group.uuid:
            # nova-api made it a member after this request's spec was written.
            self.group_members = self.group_members | {instance_uuid}
        if group is not None and instance_uuid in self.group_members:
            self._join_group(pos, instance_uuid)
        self._dirty.append(pos)
        self._scores.update(pos)

    def _account(
        self,
        pos: int,
        spec: RequestSpec,
        numa_request: NumaRequest | None,
        pci_requests: Sequence[PciRequest],
    ) -> None:
        flavor = spec.flavor
        self.free_ram_mb[pos] -= flavor.memory_mb
        self.free_disk_mb[pos] -= (flavor.root_gb + flavor.ephemeral_gb) * 1024
        self.free_vcpus[pos] -= flavor.vcpus
        self.num_instances[pos] += 1
        self.io_ops[pos] += 1
        record = self.record(pos)
        topology = self.numa(pos)
        pools = self.pci_pools(pos)
        # As Nova's consume_from_request: the NUMA fit picks the cells, and the devices
        # come from the pools their NUMA policy allows for those cells.
        cells: list[int] | None = None
        sockets: dict[int, int | None] = {}
        if numa_request is not None and topology is not None:
            fits = numa_fit.fit(
                topology,
                numa_request,
                record.report.cpu_allocation_ratio,
                record.report.ram_allocation_ratio,
                network=spec.network_metadata,
                pci_requests=pci_requests,
                pci_pools=pools,
            )
            if fits is not None:
                self._numa[pos] = numa_fit.consume(topology, numa_request, fits)
                cells = [f.host_cell for f in fits]
                sockets = {c.id: c.socket for c in topology.cells}
        if pci_requests:
            left = pci.allocate(pools, pci_requests, cells, sockets)
            if left is not None:
                self._pci[pos] = left

    def _join_group(self, pos: int, instance_uuid: str | None) -> None:
        """A member of the request's server group now runs on the host at ``pos``."""
        host = self.host(pos)
        if host not in self.group_hosts:
            self.group_hosts.add(host)
            if self._group_mask is not None:
                self._group_mask[self.positions_of_hosts([host])] = True
        if instance_uuid is not None and instance_uuid not in self.instances_on(pos):
            self._added.setdefault(pos, []).append(instance_uuid)
            if self._member_counts is not None and instance_uuid in self.group_members:
                self._member_counts[pos] += 1

    def drop(
        self,
        positions: Sequence[int],
        stage: str,
        *,
        why: Sequence[str] | None = None,
        **detail: Any,
    ) -> None:
        """Take hosts out of the rest of the request: placement capacity that earlier
        instances used up, or a claim that conflicted. Recorded as one funnel stage;
        ``why`` (aligned with ``positions``) is each host's reason code, tallied."""
        wanted = np.unique(np.asarray(positions, np.int64))
        present = wanted[_present(self._alive, wanted)]
        if not len(present):
            return
        reason = str(detail.get("reason", stage))
        codes = dict(zip(positions, why, strict=True)) if why is not None else {}
        reasons: dict[str, int] | None = {} if why is not None else None
        for pos in present.tolist():
            code = codes.get(pos)
            self._dropped[pos] = (stage, f"{reason}: {code}" if code else reason)
            if reasons is not None and code is not None:
                reasons[code] = reasons.get(code, 0) + 1
        before = len(self._alive)
        in_sync = len(self._scores.alive) == before
        self._alive = np.setdiff1d(self._alive, present, assume_unique=True)
        if in_sync:
            self._scores.drop(present)
        self.funnel.record(
            stage,
            "hosts",
            before,
            len(self._alive),
            instance=max(self.index, 0) + 1,
            reasons=reasons or None,
            **detail,
        )

    def weight_breakdown(self, positions: Sequence[int]) -> dict[str, FloatArray]:
        """Per weigher, its share of the current weight of each host in ``positions``
        (alive hosts, as ranked last): what ``explain`` shows an operator."""
        self._sync_scores()
        return self._scores.breakdown(np.asarray(positions, np.int64))

    def alternates(
        self, selected: Sequence[int], count: int, beside: int | None = None
    ) -> list[HostChoice]:
        """Up to ``count`` other hosts, best first, after re-filtering and re-weighing for
        what was consumed (Nova re-sorts once when more than one instance was placed).
        Hosts in ``selected`` (positions) are never alternates; with ``beside`` (a
        position), only hosts in that host's Nova cell are, as Nova's
        ``_get_alternate_hosts`` keeps a build's retries in the cell it was sent to."""
        if count <= 0:
            return []
        if self._dirty and not self._skip_filters:
            self._alive = self._filter(self._alive)
        if not len(self._alive):
            return []
        self._sync_scores()
        weights = self._scores.totals()
        taken = set(selected)
        cell = None if beside is None else self.record(beside).report.cell_uuid
        order = np.lexsort((np.arange(len(weights)), -weights))
        found: list[HostChoice] = []
        for index in order.tolist():
            pos = int(self._alive[index])
            if pos in taken or (beside is not None and self.record(pos).report.cell_uuid != cell):
                continue
            found.append(self.choice(pos, float(weights[index])))
            if len(found) == count:
                break
        return found

    def choice(self, pos: int, weight: float) -> HostChoice:
        row = int(self.rows[pos])
        return HostChoice(
            position=pos,
            candidate=int(self.candidate_index[pos]),
            host=self.snapshot.hosts[row],
            nodename=self.snapshot.nodenames[row],
            compute_node_uuid=self.snapshot.uuids[row],
            weight=weight,
        )

    # -- explanations ------------------------------------------------------------------

    def no_valid_host(self) -> NoValidHost:
        explanation = self.explain()
        return NoValidHost(explanation.summary, explanation=explanation.to_dict())

    def explain(self) -> Explanation:
        """Why the current instance found no host, with the hosts that came closest."""
        self.funnel.count_placement()
        stage = self.funnel.emptied_by()
        # Request filters and placement may not count hosts: the first stage that did.
        total = next((s.before for s in self.funnel.stages if s.before is not None), 0)
        which = f" for instance {self.index + 1}" if self.index > 0 else ""
        if stage is None:
            summary = f"No valid host was found{which}."
        elif stage.kind == "filter":
            summary = (
                f"No valid host was found{which}: {stage.name} removed the last "
                f"{stage.before} of {total} candidate hosts."
            )
        elif stage.kind == "weigher":
            summary = f"No valid host was found{which}: {stage.detail.get('error')}."
        else:
            reason = stage.detail.get("reason")
            because = f" ({reason})" if reason else ""
            summary = f"No valid host was found{which}: stage {stage.name} left no host{because}."
        summary = with_tally(summary, self.funnel)
        return Explanation(summary, self.funnel, self.index + 1, self.closest_misses())

    def closest_misses(self) -> list[Miss]:
        """The hosts that got furthest, with every filter they fail and why.

        The filters run in their order over the hosts that reached them, as the decision
        did: a host that failed a later filter got further than one a first filter
        stopped, and hosts that passed every filter but were dropped afterwards (capacity
        taken by earlier instances, a lost claim) furthest of all. So the misses name the
        stage that really blocked, not the many hosts an early filter removed. Among
        equals, the fewest failed filters first."""
        pos = self._filtered
        if not len(pos):
            return []
        filters = [] if self._skip_filters else self._filters
        passed_all = len(filters)
        reached = np.full(len(pos), passed_all, np.int64)
        for k, host_filter in enumerate(filters):
            asking = np.flatnonzero(reached == passed_all)
            if not len(asking):
                break
            if not host_filter.vectorized and len(asking) > _EXPLAIN_SLOW_FILTERS_ON:
                asking = asking[:_EXPLAIN_SLOW_FILTERS_ON]
            ok, _ = _verdict(host_filter.passes(self, pos[asking]))
            reached[asking[~ok]] = k
        dropped = np.isin(pos, np.fromiter(self._dropped, np.int64, len(self._dropped)))
        # A host that passed every filter and was not dropped is alive: not a miss.
        rank = np.where(dropped, passed_all + 1, reached)
        candidates = np.flatnonzero((reached < passed_all) | dropped)
        order = candidates[np.argsort(-rank[candidates], kind="stable")]
        found: list[tuple[int, Miss]] = []
        for index in order[: CLOSEST_MISSES * 4].tolist():
            p = int(pos[index])
            one = np.array([p], np.int64)
            rejections = [
                Rejection(f.name, f.reason(self, p))
                for f in filters
                if not bool(_verdict(f.passes(self, one))[0][0])
            ]
            stopped = filters[int(reached[index])].name if reached[index] < passed_all else ""
            if p in self._dropped:
                stage, why = self._dropped[p]
                rejections.append(Rejection(stage, why))
                stopped = stopped or stage
            miss = Miss(self.host(p), self.nodename(p), tuple(rejections), stopped)
            found.append((int(rank[index]), miss))
        # Furthest first, then the fewest failed filters.
        found.sort(key=lambda item: (-item[0], len(item[1].rejections)))
        return [miss for _, miss in found[:CLOSEST_MISSES]]

    def limits(self, pos: int) -> dict[str, Any]:
        """What the request's filters want the chosen host at ``pos`` to enforce (Nova's
        ``Selection.limits``)."""
        found: dict[str, Any] = {}
        for host_filter in self._filters:
            found.update(host_filter.limits(self, pos))
        return found
