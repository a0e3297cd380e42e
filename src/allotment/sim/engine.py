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
from typing import Any

import numpy as np
import numpy.typing as npt

from allotment import errors
from allotment.app import Services, build_services
from allotment.config import load_settings
from allotment.context import RequestContext
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
    ) -> None:
        self.scenario = scenario
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
        n = len(req)
        i = 0
        c = 0
        peak = -1.0
        placed_mark, wall_mark = 0, time.perf_counter()
        replay_started = wall_mark
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
            if t_event <= t_arrival:
                _, _, kind, consumer = heapq.heappop(events)
                if kind == DEPART:
                    self._depart(consumer)
                else:
                    self._move(consumer, t_event)
                continue
            self._arrive(i, t_arrival)
            i += 1
            if self.progress is not None and (i % 200 == 0 or i == n):
                self.progress(i, n, t_arrival)
        wall = time.perf_counter() - replay_started
        self.totals.update(
            {
                "build_s": round(build_s, 3),
                "replay_s": round(wall, 3),
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

    def _held(self, selection: Any) -> tuple[int, dict[int, dict[int, int]]]:
        cloud = self.cloud
        held: dict[int, dict[int, int]] = {}
        for rp, resources in selection.allocation_request.allocations.items():
            p = cloud.provider_index[rp]
            held[p] = {self.col[rc]: int(a) for rc, a in resources.items()}
        return cloud.host_index[selection.host], held

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

    def _arrive(self, i: int, now: float) -> None:
        req = self.requests
        count = int(req.count[i])
        group = int(req.group[i])
        flavor = int(req.flavor[i])
        if group >= 0:
            self.group_policy.setdefault(group, int(req.group_policy[i]))
        spec = self._spec(flavor, int(req.az[i]), group, self.group_policy.get(group, 0), count)
        uuids = [fleet.sim_uuid(self.rng) for _ in range(count)]
        self.totals["requests"] += 1
        self.totals["instances_requested"] += count
        services = self.services
        assert services is not None and services.scheduler is not None
        try:
            selections = services.scheduler.select_destinations(self.ctx, spec, uuids)
        except errors.NoValidHost as exc:
            self.totals["requests_rejected"] += 1
            self.totals["instances_rejected"] += count
            self._reject(exc, count)
            return
        life = float(req.lifetime[i])
        by_host: dict[str, list[InstanceInfo]] = {}
        for uuid, chosen in zip(uuids, selections, strict=True):
            host, held = self._held(chosen[0])
            inst = Instance(uuid, host, flavor, group, held)
            self.alive[uuid] = inst
            self._book(inst, +1)
            if group >= 0:
                self.groups.setdefault(group, set()).add(uuid)
            by_host.setdefault(chosen[0].host, []).append(self._info(inst))
            self._push(now + life, DEPART, uuid)
            if req.move[i] != MOVE_NONE:
                kind = -int(req.move[i])  # negative: not yet done; sign read in _move
                self._push(now + life / 2, MOVE, f"{uuid}:{kind}")
        self.totals["instances_placed"] += count
        assert services.host_manager is not None
        for name, infos in by_host.items():
            services.host_manager.update_instance_info(self.ctx, name, infos)

    def _info(self, inst: Instance) -> InstanceInfo:
        return InstanceInfo(
            uuid=inst.consumer,
            project_id=PROJECT,
            user_id=USER,
            flavor_name=self.scenario.flavor[inst.flavor].name,
        )

    def _forget(self, inst: Instance) -> None:
        services = self.services
        assert services is not None and services.placement_client is not None
        assert services.host_manager is not None
        services.placement_client.release(self.ctx, [inst.consumer])
        services.host_manager.delete_instance_info(
            self.ctx, self.cloud.hosts[inst.host], inst.consumer
        )
        self._book(inst, -1)

    def _depart(self, consumer: str) -> None:
        while consumer in self._renamed:  # moved: it lives on under its new consumer
            consumer = self._renamed.pop(consumer)
        inst = self.alive.pop(consumer, None)
        if inst is None:
            return
        self._forget(inst)
        if inst.group >= 0:
            self.groups[inst.group].discard(consumer)
        self.totals["departures"] += 1

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
        services = self.services
        assert services is not None and services.scheduler is not None
        assert services.host_manager is not None
        self.totals["moves"] += 1
        try:
            chosen = services.scheduler.select_destinations(self.ctx, spec, [new])[0][0]
        except errors.NoValidHost as exc:
            self.totals["moves_failed"] += 1
            self._reject(exc, 1, move=True)
            return
        self._forget(inst)
        del self.alive[consumer]
        host, held = self._held(chosen)
        moved = Instance(new, host, flavor, inst.group, held)
        self.alive[new] = moved
        self._book(moved, +1)
        if inst.group >= 0:
            members = self.groups[inst.group]
            members.discard(consumer)
            members.add(new)
        services.host_manager.update_instance_info(self.ctx, chosen.host, [self._info(moved)])
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
