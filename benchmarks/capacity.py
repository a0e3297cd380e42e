"""The capacity what-if (``POST /scheduler/v1/capacity``, ``allotment capacity``) on the
cloud of ``select_destinations.py`` (same seed, same shapes, filled 0-80%):

    .venv/bin/python benchmarks/capacity.py --hosts 1000 --hosts 10000 --out /tmp/cap.json

Per cloud size: the latency of one in-process call counting three flavors (1, 2 and 8
vCPUs) with every host listed, and in zone az1; percentiles over --runs calls after one
warm-up. Progress goes to stderr, the JSON summary to stdout (and --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from allotment.app import build_services
from allotment.context import RequestContext
from allotment.scheduler.capacity import capacity
from allotment.scheduler.request import Flavor
from select_destinations import fresh_copy, log, seeded, settings_for

FLAVORS = [
    Flavor(name="m1.small", vcpus=1, memory_mb=2048, root_gb=20),
    Flavor(name="m1.medium", vcpus=2, memory_mb=4096, root_gb=40),
    Flavor(name="m1.xlarge", vcpus=8, memory_mb=16384, root_gb=160),
]


def measure(db: Path, folder: Path, runs: int) -> dict[str, Any]:
    settings = settings_for(folder, db)
    # Loading 10,000 hosts on a busy machine can outlast the default 60 s, after which the
    # seeded heartbeats say "down"; the seed's down hosts are an hour older still.
    settings.scheduler.service_down_time = 3000.0
    services = build_services(settings)
    services.start()
    try:
        manager = services.scheduler
        assert manager is not None
        services.placement.index.ensure_loaded()
        ctx = RequestContext.internal()
        out: dict[str, Any] = {}
        for variant, zone in (("all zones", None), ("az1", "az1")):
            capacity(manager, ctx, FLAVORS, availability_zone=zone)  # warm-up
            seconds = []
            for _ in range(runs):
                started = time.perf_counter()
                found = capacity(manager, ctx, FLAVORS, availability_zone=zone)
                seconds.append(time.perf_counter() - started)
            ordered = sorted(seconds)
            out[variant] = {
                "p50_ms": round(statistics.median(ordered) * 1000, 1),
                "max_ms": round(ordered[-1] * 1000, 1),
                "fits": {f.flavor: f.total for f in found},
                "hosts_counted": len(found[0].hosts),
            }
            log(f"  {variant}: {out[variant]}")
        return out
    finally:
        services.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, action="append", required=True)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--work", default="/tmp/allotment-select-bench")
    parser.add_argument("--out")
    args = parser.parse_args()
    random.seed(args.seed)
    work = Path(args.work)
    results = {}
    for n in args.hosts:
        log(f"{n} hosts")
        db = fresh_copy(seeded(work, n, args.seed), work / f"capacity-{n}")
        results[str(n)] = measure(db, work / f"capacity-{n}", args.runs)
    summary = {"machine": platform.processor() or platform.machine(), "results": results}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
