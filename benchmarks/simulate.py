"""The fleet simulator at scale: ``allotment sim`` on 10,000 hosts and 1,000,000 requests.

    .venv/bin/python benchmarks/simulate.py --hosts 10000 --requests 1000000 \\
        --out /tmp/simulate.json

The cloud: N hosts in three shapes (32/64/96 vCPU, 256/512/768 GB, ratio 4 on VCPU),
three availability zones, a quarter of the 96-core hosts with two NUMA children, empty at
the start (the workload fills it). The workload: Poisson arrivals over 30 simulated days,
lognormal lifetimes sized so that at steady state the instances alive would take ~85% of
the RAM, five flavors, 5% of requests server groups of 2-4 (anti-affinity, one
multi-instance select_destinations call each), 10% with an AZ hint, 1% resized and 1%
migrated. Every request is one real ``select_destinations`` call (placement query,
filters, weighers, claim in SQLite on tmpfs), decided with the others of its
``--batch-window`` (simulated seconds, the scenario's ``batch_window_s``) as the coalescer
decides concurrent calls; the departures of a window are released in one transaction.

``--one-by-one`` replays as before batching: ``[scheduler] coalesce = false``, one call at
a time (for the side-by-side ratio).

``--hours H`` replays only the month's first H hours: the same arrival rate, lifetimes and
batches as the whole run, ``requests * H / 720`` requests (the fill phase of the month).

``--track-instances`` keeps Nova's ``[filter_scheduler] track_instance_changes`` on (the
default in a real cloud; off here by default because nothing in this scenario's filters
and weighers reads instance info: the group filters use the request's group hosts as in
Nova): every placement and departure then also writes instance info to the host cache.

Progress to stderr; the JSON summary (wall time, requests/s, totals) to stdout and --out.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import sys
import time
from pathlib import Path
from typing import Any

from allotment.sim.engine import Simulation
from allotment.sim.runner import workdir_root
from allotment.sim.scenario import parse_scenario
from allotment.sim.workload import generate


def scenario(
    hosts: int,
    requests: int,
    track: bool,
    hours: float = 720.0,
    window_s: float = 60.0,
    coalesce: bool = True,
) -> dict[str, Any]:
    """The cloud and the month's workload; ``hours``: only its first hours (the same arrival
    rate and lifetimes, ``requests * hours / 720`` requests)."""
    shares = [("s32", 0.3, 32, 262144, 960, 0), ("s64", 0.5, 64, 524288, 1920, 0)]
    counts = [int(hosts * s[1]) for s in shares]
    rest = hosts - sum(counts)
    numa = rest // 4
    shapes: list[dict[str, Any]] = [
        {"name": n, "count": c, "vcpus": v, "memory_mb": m, "disk_gb": d}
        for (n, _, v, m, d, _), c in zip(shares, counts, strict=True)
    ]
    shapes.append(
        {"name": "s96", "count": rest - numa, "vcpus": 96, "memory_mb": 786432, "disk_gb": 3840}
    )
    if numa:
        shapes.append(
            {
                "name": "s96n",
                "count": numa,
                "vcpus": 96,
                "memory_mb": 786432,
                "disk_gb": 3840,
                "numa_nodes": 2,
            }
        )
    for shape in shapes:
        shape["azs"] = ["az1", "az2", "az3"]
    duration = 720.0
    # Little's law: alive = arrival rate x mean lifetime; ~1.1 instances per request and
    # ~7.3 GB per instance of this mix.
    ram_gb = sum(s["count"] * s["memory_mb"] / 1024 for s in shapes)
    mean_life = 0.85 * ram_gb / 7.3 / (1.1 * requests / duration)
    requests = round(requests * min(hours, duration) / duration)
    duration = min(hours, duration)
    return {
        "name": f"bench-{hosts}-{requests}",
        "checkpoints": 60,
        "batch_window_s": window_s,
        "hosts": shapes,
        "flavor": [
            {"name": "m1.small", "vcpus": 1, "memory_mb": 2048, "root_gb": 20, "weight": 40},
            {"name": "m1.medium", "vcpus": 2, "memory_mb": 4096, "root_gb": 40, "weight": 30},
            {"name": "m1.large", "vcpus": 4, "memory_mb": 8192, "root_gb": 80, "weight": 18},
            {"name": "r1.xlarge", "vcpus": 4, "memory_mb": 32768, "root_gb": 80, "weight": 8},
            {"name": "c1.4xlarge", "vcpus": 16, "memory_mb": 32768, "root_gb": 160, "weight": 4},
        ],
        "workload": {
            "seed": 20261204,
            "duration_h": duration,
            "requests": requests,
            "existing_load": 0.0,
            "az_hints": {"az1": 0.05, "az2": 0.05},
            "resize_fraction": 0.01,
            "migrate_fraction": 0.01,
            "lifetime": {"distribution": "lognormal", "mean_h": mean_life, "sigma": 1.0},
            "groups": {"fraction": 0.05, "size_min": 2, "size_max": 4},
        },
        "policy": [
            {
                "name": "default",
                "filter_scheduler": {"track_instance_changes": track},
                "scheduler": {"coalesce": coalesce},
            }
        ],
    }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--track-instances", action="store_true")
    parser.add_argument(
        "--hours", type=float, default=720.0, help="replay only the month's first hours"
    )
    parser.add_argument(
        "--batch-window", type=float, default=60.0, help="simulated seconds per batch"
    )
    parser.add_argument(
        "--one-by-one",
        action="store_true",
        help="[scheduler] coalesce = false: one select_destinations call at a time",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the replay")
    parser.add_argument("--out", help="write the JSON summary here too")
    args = parser.parse_args()
    sc = parse_scenario(
        scenario(
            args.hosts,
            args.requests,
            args.track_instances,
            args.hours,
            args.batch_window,
            not args.one_by_one,
        )
    )
    started = time.perf_counter()
    requests = generate(sc)
    generate_s = time.perf_counter() - started
    log(f"{len(requests)} requests generated in {generate_s:.1f}s")
    last = [time.perf_counter()]

    def progress(done: int, total: int, hours: float) -> None:
        now = time.perf_counter()
        if now - last[0] >= 30 or done == total:
            last[0] = now
            log(f"{done}/{total} requests, simulated {hours:.0f} h")

    root = Path(workdir_root() or "/tmp") / f"allotment-simulate-{os.getpid()}"
    sim = Simulation(sc, sc.policy[0], requests, workdir=root, progress=progress)
    profile = cProfile.Profile() if args.profile else None
    try:
        if profile is not None:
            profile.enable()
        result = sim.run()
        if profile is not None:
            profile.disable()
    finally:
        sim.close()
        for leftover in root.glob("*"):
            leftover.unlink()
        root.rmdir()
    if profile is not None:
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
    totals = result.totals
    summary = {
        "meta": {
            "python": platform.python_version(),
            "argv": sys.argv,
            "cpus": os.cpu_count(),
            "load_at_end": os.getloadavg(),
        },
        "hosts": args.hosts,
        "requests": len(requests),
        "hours": sc.workload.duration_h,
        "batch_window_s": sc.batch_window_s,
        "one_by_one": args.one_by_one,
        "track_instance_changes": args.track_instances,
        "generate_s": round(generate_s, 2),
        "build_s": totals["build_s"],
        "replay_s": totals["replay_s"],
        "replay_cpu_s": totals["replay_cpu_s"],
        "wall_s": round(time.perf_counter() - started, 1),
        "requests_per_s": totals["requests_per_s"],
        "placements_per_s": totals["placements_per_s"],
        "totals": {
            k: v for k, v in totals.items() if k not in {"build_s", "replay_s", "replay_cpu_s"}
        },
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
