"""The replay: simulated time, arrivals through the real ``select_destinations``,
departures that delete allocations and instance info, moves (resize, cold migration)
through the scheduler again, and metrics at checkpoints.

Every decision is the real scheduler's (request filters, placement's allocation
candidates, host filters, weighers, the claim in SQL). The simulation only keeps its own
books of what each instance holds, from the allocation requests the scheduler returned, so
the metrics need no SQL; tests check those books against the ledger.
"""

from __future__ import annotations

import heapq
import logging
import random
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from allotment import errors
from allotment.app import Services, build_services
from allotment.config import load_settings
from allotment.context import RequestContext
from allotment.scheduler.decision import Selection
from allotment.scheduler.records import InstanceInfo
from allotment.scheduler.request import Flavor, InstanceGroup, RequestSpec
from allotment.sim import fleet
from allotment.sim.fleet import PROJECT, USER, Cloud, Instance
from allotment.sim.scenario import Policy, Scenario
from allotment.sim.workload import GROUP_POLICIES, MOVE_NONE, MOVE_RESIZE, Requests, lifetimes

DEPART, MOVE = 0, 1
# A host's heartbeat is never stale in simulated time (the replay runs for real minutes).
NEVER_DOWN_S = 10 * 365 * 86400.0

Progress = Callable[[int, int, float], None]
Checkpoint = Callable[["Simulation", float], None]
# Where one instance went: its host and what it holds (provider uuid -> class -> amount).
Placed = tuple[str, dict[str, dict[str, int]]]
# Copies the cloud built here to another allotment; returns the backend that replays there.
Connect = Callable[["Services", "Cloud"], "Backend"]


class Backend(Protocol):
    """The allotment a replay runs against: in-process (``Local``) or a server over HTTP
    (``allotment.sim.remote.Http``)."""

    def select(
        self, calls: list[tuple[RequestSpec, list[str]]]
    ) -> list[list[Placed] | errors.NoValidHost]:
        """Each call's placed instances, in order, or its NoValidHost."""
        ...

    def release(self, consumers: list[str]) -> None: ...

    def instances_on(self, host: str, infos: list[InstanceInfo]) -> None: ...

    def instances_gone(self, gone: dict[str, list[str]]) -> None:
        """These instances (by host) are gone."""
        ...


class Local:
    """The real scheduler and placement in this process: calls decided as coalesced
    batches, departures released in one transaction and their instance info dropped in
    another."""

    def __init__(self, services: Services, ctx: RequestContext) -> None:
        assert services.scheduler is not None and services.host_manager is not None
        assert services.placement_client is not None
        self.scheduler = services.scheduler
        self.host_manager = services.host_manager
        self.placement = services.placement_client
        self.ctx = ctx

    def select(
        self, calls: list[tuple[RequestSpec, list[str]]]
    ) -> list[list[Placed] | errors.NoValidHost]:
        out: list[list[Placed] | errors.NoValidHost] = []
        for answer in self.scheduler.select_destinations_many(self.ctx, calls):
            if isinstance(answer, errors.NoValidHost):
                out.append(answer)
            elif isinstance(answer, errors.AllotmentError):
                raise answer
            else:
                out.append([_placed(chosen[0]) for chosen in answer])
        return out

    def release(self, consumers: list[str]) -> None:
        self.placement.release(self.ctx, consumers)

    def instances_on(self, host: str, infos: list[InstanceInfo]) -> None:
        self.host_manager.update_instance_info(self.ctx, host, infos)

    def instances_gone(self, gone: dict[str, list[str]]) -> None:
        self.host_manager.delete_instances_info(self.ctx, gone)


def _placed(selection: Selection) -> Placed:
    request = selection.allocation_request
    assert request is not None
    return selection.host, {rp: dict(res) for rp, res in request.allocations.items()}


@dataclass
class PolicyResult:
    """What one policy did to the workload: series at every checkpoint and totals."""

    policy: str
    settings: dict[str, Any]
    rcs: list[str]
    flavors: list[str]
    zones: list[str]
    times: list[float] = field(default_factory=list)
    utilization: dict[str, list[float]] = field(default_factory=dict)
    stranded_vcpu: list[float] = field(default_factory=list)
    stranded_ram: list[float] = field(default_factory=list)
    rejections: dict[str, list[int]] = field(default_factory=dict)
    placements_per_s: list[float] = field(default_factory=list)
    zone_fill: dict[str, list[float]] = field(default_factory=dict)
    largest_fit: list[int] = field(default_factory=list)  # flavor index, -1 none fits
    alive: list[int] = field(default_factory=list)
    instances_per_host: list[int] = field(default_factory=list)  # at peak utilization
    totals: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyResult:
        return cls(**data)


def sim_settings(policy: Policy, db: Path) -> Any:
    scheduler = {"service_down_time": NEVER_DOWN_S, **policy.scheduler}
    return load_settings(
        None,
        {
            "server": {"auth": "noauth", "state_dir": str(db.parent / "state")},
            "database": {"url": f"sqlite:///{db}", "sqlite_synchronous": "NORMAL"},
            "logging": {"level": "WARNING"},
            "scheduler": scheduler,
            "filter_scheduler": policy.filter_scheduler,
        },
        environ={},
    )


class Simulation:
    """One policy over one scenario's workload, in a throw-away SQLite database."""

    def __init__(
        self,
        scenario: Scenario,
        policy: Policy,
        requests: Requests,
        *,
        workdir: Path | None = None,
        progress: Progress | None = None,
        on_checkpoint: Checkpoint | None = None,
        connect: Connect | None = None,
    ) -> None:
        """``connect``: replay against another allotment (``remote.connect``) instead of
        the one in this process, which then only builds the cloud."""
        self.scenario = scenario
        self.connect = connect
        self.policy = policy
        self.requests = requests
        self.progress = progress
        self.on_checkpoint = on_checkpoint
        self._tmp = (
            None if workdir is not None else tempfile.TemporaryDirectory(prefix="sim-", dir=_shm())
        )
        self.workdir = workdir if workdir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(scenario.workload.seed)
        self.ctx = RequestContext.internal("req-sim")
        self.services: Services | None = None
        self.alive: dict[str, Instance] = {}
        self.groups: dict[int, set[str]] = {}
        self.group_policy: dict[int, int] = {}
        self._renamed: dict[str, str] = {}
        self._batching = True

    # -- set-up ---------------------------------------------------------------------------

    def _start(self) -> Cloud:
        db = self.workdir / f"{self.policy.name}.sqlite"
        for stale in self.workdir.glob(f"{self.policy.name}.sqlite*"):
            stale.unlink()
        services = build_services(sim_settings(self.policy, db))
        self.services = services
        cloud = fleet.build(services, self.scenario, self.policy, self.rng)
        services.placement.index.ensure_loaded()
        assert services.host_manager is not None and services.scheduler is not None
        services.host_manager.load()
        # The scheduler's random pick among the best host_subset_size hosts, seeded.
        services.scheduler.rng = random.Random(self.scenario.workload.seed + 1)
        # Without [scheduler] coalesce a server decides one call at a time: so does the
        # replay (for comparison; far slower).
        self._batching = services.settings.scheduler.coalesce
        self.backend = (
            Local(services, self.ctx) if self.connect is None else self.connect(services, cloud)
        )
        return cloud

    def close(self) -> None:
        if self.services is not None:
            self.services.stop()
            self.services = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- the replay -------------------------------------------------------------------------

    def run(self) -> PolicyResult:
        logger = logging.getLogger("allotment")
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            return self._run()
        finally:
            logger.setLevel(level)

    def _run(self) -> PolicyResult:
        started = time.perf_counter()
        cloud = self.cloud = self._start()
        build_s = time.perf_counter() - started
        scenario, req = self.scenario, self.requests
        self.used = np.zeros_like(cloud.capacity)
        self.per_host = np.zeros(len(cloud.hosts), dtype=np.int64)
        self.col = {rc: i for i, rc in enumerate(cloud.rcs)}
        self._flavors = [
            Flavor(
                name=f.name,
                vcpus=f.vcpus,
                memory_mb=f.memory_mb,
                root_gb=f.root_gb,
                extra_specs=dict(f.extra_specs),
            )
            for f in scenario.flavor
        ]
        self._bigger = _next_bigger(scenario)
        events: list[tuple[float, int, int, str]] = []
        self._events = events
        self._seq = 0
        # Instances already running live on for the workload's lifetime distribution.
        remaining = lifetimes(
            scenario.workload.lifetime,
            np.random.default_rng(scenario.workload.seed + 2),
            len(cloud.existing),
        )
        for inst, life in zip(cloud.existing, remaining, strict=True):
            self._book(inst, +1)
            self.alive[inst.consumer] = inst
            self._push(float(life), DEPART, inst.consumer)
        result = PolicyResult(
            policy=self.policy.name,
            settings=self.policy.model_dump(exclude={"name"}),
            rcs=cloud.rcs,
            flavors=[f.name for f in scenario.flavor],
            zones=sorted(set(cloud.host_az)),
        )
        result.utilization = {rc: [] for rc in cloud.rcs}
        result.zone_fill = {z: [] for z in result.zones}
        self._rej_interval: dict[str, int] = {}
        self.totals: dict[str, Any] = {
            "hosts": len(cloud.hosts),
            "providers": len(cloud.provider_uuid),
            "existing_instances": len(cloud.existing),
            "requests": 0,
            "batches": 0,
            "instances_requested": 0,
            "instances_placed": 0,
            "requests_rejected": 0,
            "instances_rejected": 0,
            "departures": 0,
            "moves": 0,
            "moves_failed": 0,
            "rejections_by_reason": {},
        }
        checkpoints = scenario.checkpoint_times(req.duration_h)
        window = scenario.batch_window_s / 3600.0
        n = len(req)
        i = 0
        c = 0
        peak = -1.0
        placed_mark, wall_mark = 0, time.perf_counter()
        replay_started = wall_mark
        cpu_started = time.process_time()
        while c < len(checkpoints):
            t_arrival = float(req.time[i]) if i < n else np.inf
            t_event = events[0][0] if events else np.inf
            t_cp = checkpoints[c]
            if t_cp < t_arrival and t_cp < t_event:
                now = time.perf_counter()
                placed = self.totals["instances_placed"]
                rate = (placed - placed_mark) / max(now - wall_mark, 1e-9)
                placed_mark, wall_mark = placed, now
                dominant = self._checkpoint(result, t_cp, rate)
                if dominant > peak:
                    peak = dominant
                    result.instances_per_host = self.per_host.tolist()
                if self.on_checkpoint is not None:
                    self.on_checkpoint(self, t_cp)
                c += 1
                continue
            if window > 0:
                # A window's departures and moves first, then its arrivals as one batch.
                end = min(min(t_arrival, t_event) + window, t_cp)
                self._events_until(end)
                j = i
                while j < n and req.time[j] <= end:
                    j += 1
            elif t_event <= t_arrival:
                self._events_until(min(t_arrival, t_cp))
                j = i
            else:
                j = self._exact_batch(i, min(t_event, np.nextafter(t_cp, np.inf)))
            if j > i:
                self._arrive(i, j)
                if self.progress is not None and (j // 200 > i // 200 or j == n):
                    self.progress(j, n, float(req.time[j - 1]))
                i = j
        wall = time.perf_counter() - replay_started
        self.totals.update(
            {
                "build_s": round(build_s, 3),
                "replay_s": round(wall, 3),
                # This process's CPU time: what the replay cost on a machine others share.
                "replay_cpu_s": round(time.process_time() - cpu_started, 3),
                "requests_per_s": round(self.totals["requests"] / max(wall, 1e-9), 1),
                "placements_per_s": round(self.totals["instances_placed"] / max(wall, 1e-9), 1),
                "alive_at_end": len(self.alive),
                "peak_utilization": {
                    rc: round(max(v), 4) if v else 0.0 for rc, v in result.utilization.items()
                },
                "mean_stranded_vcpu": round(float(np.mean(result.stranded_vcpu)), 4),
                "mean_stranded_ram": round(float(np.mean(result.stranded_ram)), 4),
            }
        )
        result.totals = self.totals
        return result

    def _push(self, at: float, kind: int, consumer: str) -> None:
        if np.isfinite(at):
            self._seq += 1
            heapq.heappush(self._events, (at, self._seq, kind, consumer))

    # -- what an instance holds -------------------------------------------------------------

    def _book(self, inst: Instance, sign: int) -> None:
        for p, per in inst.allocations.items():
            for c, amount in per.items():
                self.used[p, c] += sign * amount
        self.per_host[inst.host] += sign

    def _held(self, placed: Placed) -> tuple[int, dict[int, dict[int, int]]]:
        cloud = self.cloud
        host, allocations = placed
        if host not in cloud.host_index or not set(allocations) <= cloud.provider_index.keys():
            raise errors.ConfigError(
                f"the scheduler placed an instance on {host}, a host this scenario did not "
                "build: the replay can only account for its own hosts"
            )
        held: dict[int, dict[int, int]] = {}
        for rp, resources in allocations.items():
            held[cloud.provider_index[rp]] = {self.col[rc]: int(a) for rc, a in resources.items()}
        return cloud.host_index[host], held

    def _spec(
        self,
        flavor: int,
        az: int,
        group: int,
        policy: int,
        count: int,
        ignore: list[str] | None = None,
    ) -> RequestSpec:
        fields: dict[str, Any] = {
            "project_id": PROJECT,
            "user_id": USER,
            "flavor": self._flavors[flavor],
            "num_instances": count,
        }
        if az >= 0:
            fields["availability_zone"] = self.requests.zones[az]
        if group >= 0:
            members = self.groups.get(group, set())
            fields["instance_group"] = InstanceGroup(
                uuid=str(uuidlib.uuid5(uuidlib.NAMESPACE_OID, f"group-{group}")),
                policy=GROUP_POLICIES[policy],
                members=sorted(members),
                hosts=sorted({self.cloud.hosts[self.alive[m].host] for m in members}),
            )
        if ignore:
            fields["ignore_hosts"] = ignore
        return RequestSpec(**fields)

    def _reject(self, exc: errors.NoValidHost, instances: int, move: bool = False) -> None:
        explanation = exc.extra.get("explanation") or {}
        stage = (explanation.get("emptied_by") or {}).get("stage", "unexplained")
        reason = f"move: {stage}" if move else str(stage)
        by = self.totals["rejections_by_reason"]
        by[reason] = by.get(reason, 0) + instances
        self._rej_interval[reason] = self._rej_interval.get(reason, 0) + instances

    def _exact_batch(self, i: int, before: float) -> int:
        """The end of the batch of arrivals from ``i`` that no other event separates: each
        earlier than ``before`` and than every departure or move of the arrivals before
        it, so the batch decides what one call after the other would."""
        req = self.requests
        first_event = before
        j = i
        while j < len(req) and req.time[j] < first_event:
            life = float(req.lifetime[j])
            due = life / 2 if req.move[j] != MOVE_NONE else life
            first_event = min(first_event, float(req.time[j]) + due)
            j += 1
            if not self._batching:
                break
        return j

    def _arrive(self, i: int, j: int) -> None:
        """Arrivals ``i`` to ``j - 1``, decided as one batch in arrival order (one
        ``select_destinations`` call each, as many callers at once would make them)."""
        req = self.requests
        calls: list[tuple[RequestSpec, list[str]]] = []
        for k in range(i, j):
            count = int(req.count[k])
            group = int(req.group[k])
            if group >= 0:
                self.group_policy.setdefault(group, int(req.group_policy[k]))
            spec = self._spec(
                int(req.flavor[k]), int(req.az[k]), group, self.group_policy.get(group, 0), count
            )
            calls.append((spec, [fleet.sim_uuid(self.rng) for _ in range(count)]))
            self.totals["instances_requested"] += count
        self.totals["requests"] += j - i
        self.totals["batches"] += 1
        answers = self.backend.select(calls)
        by_host: dict[str, list[InstanceInfo]] = {}
        for k, (_, uuids), answer in zip(range(i, j), calls, answers, strict=True):
            if isinstance(answer, errors.NoValidHost):
                self.totals["requests_rejected"] += 1
                self.totals["instances_rejected"] += len(uuids)
                self._reject(answer, len(uuids))
                continue
            now = float(req.time[k])
            life = float(req.lifetime[k])
            group = int(req.group[k])
            for uuid, placed in zip(uuids, answer, strict=True):
                host, held = self._held(placed)
                inst = Instance(uuid, host, int(req.flavor[k]), group, held)
                self.alive[uuid] = inst
                self._book(inst, +1)
                if group >= 0:
                    self.groups.setdefault(group, set()).add(uuid)
                by_host.setdefault(placed[0], []).append(self._info(inst))
                self._push(now + life, DEPART, uuid)
                if req.move[k] != MOVE_NONE:
                    kind = -int(req.move[k])  # negative: not yet done; sign read in _move
                    self._push(now + life / 2, MOVE, f"{uuid}:{kind}")
            self.totals["instances_placed"] += len(uuids)
        for name, infos in by_host.items():
            self.backend.instances_on(name, infos)

    def _info(self, inst: Instance) -> InstanceInfo:
        return InstanceInfo(
            uuid=inst.consumer,
            project_id=PROJECT,
            user_id=USER,
            flavor_name=self.scenario.flavor[inst.flavor].name,
        )

    def _forget(self, gone: list[Instance]) -> None:
        """Release what these instances hold (one placement transaction) and drop their
        instance info."""
        if not gone:
            return
        self.backend.release([inst.consumer for inst in gone])
        by_host: dict[str, list[str]] = {}
        for inst in gone:
            by_host.setdefault(self.cloud.hosts[inst.host], []).append(inst.consumer)
            self._book(inst, -1)
        self.backend.instances_gone(by_host)

    def _events_until(self, end: float) -> None:
        """Departures and moves due by ``end``, in time order: each run of departures
        released at once."""
        events = self._events
        departing: list[str] = []
        while events and events[0][0] <= end:
            at, _, kind, consumer = heapq.heappop(events)
            if kind == DEPART:
                departing.append(consumer)
                continue
            self._depart(departing)
            departing = []
            self._move(consumer, at)
        self._depart(departing)

    def _depart(self, consumers: list[str]) -> None:
        gone: list[Instance] = []
        for consumer in consumers:
            while consumer in self._renamed:  # moved: it lives on under its new consumer
                consumer = self._renamed.pop(consumer)
            inst = self.alive.pop(consumer, None)
            if inst is None:
                continue
            if inst.group >= 0:
                self.groups[inst.group].discard(consumer)
            gone.append(inst)
        self._forget(gone)
        self.totals["departures"] += len(gone)

    def _move(self, token: str, now: float) -> None:
        """A resize (to the next larger flavor with the same extra specs) or a cold
        migration: a new claim elsewhere through select_destinations, then the source
        allocations are released (Nova's confirm). The instance lives on under the new
        claim's consumer until its departure."""
        consumer, _, kind_s = token.rpartition(":")
        inst = self.alive.get(consumer)
        if inst is None:
            return
        resize = -int(kind_s) == MOVE_RESIZE
        flavor = self._bigger[inst.flavor] if resize else inst.flavor
        if flavor < 0:
            return
        spec = self._spec(
            flavor,
            -1,
            inst.group,
            self.group_policy.get(inst.group, 0),
            1,
            ignore=[self.cloud.hosts[inst.host]],
        )
        new = fleet.sim_uuid(self.rng)
        self.totals["moves"] += 1
        (answer,) = self.backend.select([(spec, [new])])
        if isinstance(answer, errors.NoValidHost):
            self.totals["moves_failed"] += 1
            self._reject(answer, 1, move=True)
            return
        self._forget([inst])
        del self.alive[consumer]
        host, held = self._held(answer[0])
        moved = Instance(new, host, flavor, inst.group, held)
        self.alive[new] = moved
        self._book(moved, +1)
        if inst.group >= 0:
            members = self.groups[inst.group]
            members.discard(consumer)
            members.add(new)
        self.backend.instances_on(answer[0][0], [self._info(moved)])
        # Its departure is booked under the old consumer: follow the rename then.
        self._renamed[consumer] = new

    # -- metrics --------------------------------------------------------------------------

    def _checkpoint(self, result: PolicyResult, t: float, rate: float) -> float:
        cloud = self.cloud
        cap = cloud.capacity
        host_cap = cloud.host_capacity()
        host_used = cloud.per_host(self.used)
        total_cap = host_cap.sum(axis=0)
        util = np.divide(
            host_used.sum(axis=0), total_cap, out=np.zeros(len(cloud.rcs)), where=total_cap > 0
        )
        result.times.append(round(t, 6))
        for rc, value in zip(cloud.rcs, util, strict=True):
            result.utilization[rc].append(round(float(value), 6))
        vcpu, ram = self.col["VCPU"], self.col["MEMORY_MB"]
        free_host = host_cap - host_used
        min_cpu, min_ram = _smallest(self.scenario)
        ram_gone = free_host[:, ram] < min_ram
        cpu_gone = free_host[:, vcpu] < min_cpu
        result.stranded_vcpu.append(
            round(float(free_host[ram_gone, vcpu].sum() / max(total_cap[vcpu], 1)), 6)
        )
        result.stranded_ram.append(
            round(float(free_host[cpu_gone, ram].sum() / max(total_cap[ram], 1)), 6)
        )
        reasons = set(result.rejections) | set(self._rej_interval)
        for reason in reasons:
            series = result.rejections.setdefault(reason, [0] * (len(result.times) - 1))
            series.append(self._rej_interval.get(reason, 0))
        self._rej_interval = {}
        result.placements_per_s.append(round(rate, 1) if len(result.times) > 1 else 0.0)
        zones = np.array(cloud.host_az)
        for zone in result.zones:
            mask = zones == zone
            share = [
                host_used[mask, c].sum() / max(host_cap[mask, c].sum(), 1) for c in (vcpu, ram)
            ]
            result.zone_fill[zone].append(round(float(max(share)), 6))
        result.largest_fit.append(self._largest_fit(cap - self.used))
        result.alive.append(len(self.alive))
        return float(max(util[vcpu], util[ram]))

    def _largest_fit(self, free: npt.NDArray[np.float64]) -> int:
        """The largest flavor (in the order of ``_size_order``) some host could still take,
        by the simulation's books: each resource class of the unnumbered group from one
        provider of the tree, each numbered group from a provider of its own; traits and
        host filters are not considered."""
        cloud = self.cloud
        hosts = len(cloud.hosts)
        best = -1
        for index in _size_order(self.scenario):
            plain, numbered = fleet.flavor_demand(self.scenario.flavor[index])
            ok = np.ones(hosts, dtype=bool)
            for rc, amount in plain.items():
                c = self.col[rc]
                fits = np.bincount(cloud.provider_root, free[:, c] >= amount, minlength=hosts)
                ok &= fits >= 1
            needs: dict[tuple[str, int], int] = {}
            for group in numbered:
                for rc, amount in group.items():
                    needs[(rc, amount)] = needs.get((rc, amount), 0) + 1
            for (rc, amount), k in needs.items():
                c = self.col[rc]
                fits = np.bincount(cloud.provider_root, free[:, c] >= amount, minlength=hosts)
                ok &= fits >= k
            if ok.any():
                best = index
        return best


def _size_key(scenario: Scenario, index: int) -> tuple[int, int, int, int]:
    f = scenario.flavor[index]
    plain, numbered = fleet.flavor_demand(f)
    extra = sum(a for rc, a in plain.items() if rc not in fleet.BASE_RCS)
    extra += sum(sum(g.values()) for g in numbered)
    return (extra, f.vcpus * 1024 + f.memory_mb // 1024, f.memory_mb, f.root_gb)


def _size_order(scenario: Scenario) -> list[int]:
    """Flavors smallest first: by devices (GPUs...), then VCPU, RAM and disk."""
    return sorted(range(len(scenario.flavor)), key=lambda i: _size_key(scenario, i))


def _next_bigger(scenario: Scenario) -> list[int]:
    """For each flavor, the next larger one with the same extra specs (-1: none)."""
    order = _size_order(scenario)
    out = []
    for i, f in enumerate(scenario.flavor):
        later = order[order.index(i) + 1 :]
        same = [j for j in later if scenario.flavor[j].extra_specs == f.extra_specs]
        out.append(same[0] if same else -1)
    return out


def _smallest(scenario: Scenario) -> tuple[int, int]:
    """The smallest VCPU and RAM any flavor of the mix asks for."""
    return min(f.vcpus for f in scenario.flavor), min(f.memory_mb for f in scenario.flavor)


def _shm() -> str | None:
    return "/dev/shm" if Path("/dev/shm").is_dir() else None
