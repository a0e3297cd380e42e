"""The workload: requests over simulated time, drawn from the scenario's distributions with
a seeded generator, or read from a CSV trace (``time, flavor, lifetime, group, az``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from allotment.errors import ConfigError
from allotment.sim.scenario import Lifetime, Scenario

GROUP_POLICIES = ["anti-affinity", "affinity", "soft-anti-affinity", "soft-affinity"]
MOVE_NONE, MOVE_RESIZE, MOVE_MIGRATE = 0, 1, 2


@dataclass(frozen=True)
class Requests:
    """One row per ``select_destinations`` call, ordered by arrival time (hours)."""

    time: npt.NDArray[np.float64]
    flavor: npt.NDArray[np.int32]  # index into scenario.flavor
    lifetime: npt.NDArray[np.float64]  # hours; inf lives past the end
    count: npt.NDArray[np.int32]  # instances in the call
    group: npt.NDArray[np.int64]  # server group id, -1 for none
    group_policy: npt.NDArray[np.int8]  # index into GROUP_POLICIES
    az: npt.NDArray[np.int32]  # index into zones, -1 for no hint
    move: npt.NDArray[np.int8]  # MOVE_*: once, half-way through each instance's life
    zones: list[str]
    duration_h: float

    def __len__(self) -> int:
        return len(self.time)


def lifetimes(spec: Lifetime, rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    if spec.distribution == "exponential":
        out = rng.exponential(spec.mean_h, n)
    elif spec.distribution == "lognormal":
        # mean of the lognormal = exp(mu + sigma^2 / 2) = mean_h
        mu = np.log(spec.mean_h) - spec.sigma**2 / 2
        out = rng.lognormal(mu, spec.sigma, n)
    elif spec.distribution == "uniform":
        assert spec.max_h is not None
        out = rng.uniform(spec.min_h, spec.max_h, n)
    elif spec.distribution == "fixed":
        out = np.full(n, spec.mean_h)
    else:  # forever
        out = np.full(n, np.inf)
    return np.maximum(out, spec.min_h).astype(np.float64)


def zones_of(scenario: Scenario) -> list[str]:
    seen: dict[str, None] = {}
    for shape in scenario.hosts:
        for zone in shape.azs:
            seen.setdefault(zone)
    return list(seen)


def generate(scenario: Scenario) -> Requests:
    """The scenario's requests: from its trace if it names one, else drawn (seeded)."""
    if scenario.workload.trace is not None:
        return read_trace(scenario, scenario.workload.trace)
    w = scenario.workload
    rng = np.random.default_rng(w.seed)
    n = w.requests
    zones = zones_of(scenario)
    # Poisson arrivals: exponential gaps, rescaled onto the span.
    gaps = rng.exponential(1.0, n + 1)
    times = np.cumsum(gaps)[:n] / gaps.sum() * w.duration_h
    weights = np.array([f.weight for f in scenario.flavor], dtype=np.float64)
    flavor = rng.choice(len(weights), size=n, p=weights / weights.sum()).astype(np.int32)
    life = lifetimes(w.lifetime, rng, n)
    grouped = rng.random(n) < w.groups.fraction
    count = np.where(grouped, rng.integers(w.groups.size_min, w.groups.size_max + 1, n), 1).astype(
        np.int32
    )
    group = np.where(grouped, np.arange(n), -1).astype(np.int64)
    pol_w = np.array([w.groups.policies.get(p, 0.0) for p in GROUP_POLICIES])  # type: ignore[call-overload]
    if pol_w.sum() <= 0:
        pol_w = np.array([1.0, 0, 0, 0])
    group_policy = rng.choice(len(GROUP_POLICIES), size=n, p=pol_w / pol_w.sum()).astype(np.int8)
    az = np.full(n, -1, dtype=np.int32)
    if w.az_hints:
        shares = [w.az_hints.get(z, 0.0) for z in zones]
        p = np.array([*shares, max(0.0, 1.0 - sum(shares))])
        az = rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int32)
        az[az == len(zones)] = -1
    draw = rng.random(n)
    move = np.zeros(n, dtype=np.int8)
    move[draw < w.resize_fraction] = MOVE_RESIZE
    move[(draw >= w.resize_fraction) & (draw < w.resize_fraction + w.migrate_fraction)] = (
        MOVE_MIGRATE
    )
    return Requests(times, flavor, life, count, group, group_policy, az, move, zones, w.duration_h)


def read_trace(scenario: Scenario, path: Path) -> Requests:
    """A CSV trace with a header row: ``time`` and ``lifetime`` in hours (empty lifetime:
    lives past the end), ``flavor`` by name, optional ``group`` (rows naming the same group
    are members of one server group, with the workload's most likely group policy) and
    ``az`` (a zone hint)."""
    flavors = {f.name: i for i, f in enumerate(scenario.flavor)}
    zones = zones_of(scenario)
    policies = scenario.workload.groups.policies
    policy = GROUP_POLICIES.index(max(policies, key=lambda k: policies[k]))
    groups: dict[str, int] = {}
    rows: list[tuple[float, int, float, int, int]] = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"time", "flavor"} - set(reader.fieldnames or [])
        if missing:
            raise ConfigError(f"trace {path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                t = float(row["time"])
                life = float(row["lifetime"]) if (row.get("lifetime") or "").strip() else np.inf
            except ValueError:
                raise ConfigError(
                    f"trace {path}:{line}: time and lifetime must be numbers"
                ) from None
            if t < 0 or life < 0:
                raise ConfigError(f"trace {path}:{line}: time and lifetime must be >= 0")
            name = (row.get("flavor") or "").strip()
            if name not in flavors:
                raise ConfigError(
                    f"trace {path}:{line}: unknown flavor {name!r} "
                    f"(the scenario defines {', '.join(flavors)})"
                )
            zone = (row.get("az") or "").strip()
            if zone and zone not in zones:
                raise ConfigError(f"trace {path}:{line}: no host is in zone {zone!r}")
            gname = (row.get("group") or "").strip()
            gid = groups.setdefault(gname, len(groups)) if gname else -1
            rows.append((t, flavors[name], life, gid, zones.index(zone) if zone else -1))
    rows.sort(key=lambda r: r[0])
    n = len(rows)
    duration = max(scenario.workload.duration_h, rows[-1][0] if rows else 0.0)
    return Requests(
        time=np.array([r[0] for r in rows], dtype=np.float64),
        flavor=np.array([r[1] for r in rows], dtype=np.int32),
        lifetime=np.array([r[2] for r in rows], dtype=np.float64),
        count=np.ones(n, dtype=np.int32),
        group=np.array([r[3] for r in rows], dtype=np.int64),
        group_policy=np.full(n, policy, dtype=np.int8),
        az=np.array([r[4] for r in rows], dtype=np.int32),
        move=np.zeros(n, dtype=np.int8),
        zones=zones,
        duration_h=duration,
    )
