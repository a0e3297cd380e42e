"""Load test: the heaviest allowed allocation-candidates request, repeated, together with
200 concurrent ordinary requests, while a separate process measures ``GET /`` latency.

The fleet is the issue-12 case (10 hosts x 8 GPU children, 12 groups of ``VGPU:1``,
``group_policy=none``, no ``limit``): without the cap it built 407,790 candidates and
blocked ``GET /`` for 23 s; with ``[limits] max_allocation_candidates`` (default 10000) it
returns at most the cap and runs in a worker thread. The goal: ``GET /`` p99 < 100 ms.

    .venv/bin/python benchmarks/load_candidates.py [--seconds 20] [--concurrency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from benchmarks.serve import allotment_server

HEADERS = {"x-auth-token": "admin", "openstack-api-version": "placement latest"}
HEAVY = {**{f"resources{i}": "VGPU:1" for i in range(1, 13)}, "group_policy": "none"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_fleet(url: str, hosts: int = 10, gpus: int = 8) -> list[str]:
    roots = []
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as client:
        for h in range(hosts):
            root = str(uuid.uuid4())
            roots.append(root)
            client.post("/resource_providers", json={"name": f"cn{h}", "uuid": root})
            client.put(
                f"/resource_providers/{root}/inventories",
                json={"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 64}}},
            ).raise_for_status()
            for g in range(gpus):
                gpu = str(uuid.uuid4())
                client.post(
                    "/resource_providers",
                    json={"name": f"cn{h}-gpu{g}", "uuid": gpu, "parent_provider_uuid": root},
                ).raise_for_status()
                client.put(
                    f"/resource_providers/{gpu}/inventories",
                    json={"resource_provider_generation": 0, "inventories": {"VGPU": {"total": 4}}},
                ).raise_for_status()
    return roots


def probe(url: str, seconds: float, out: Any) -> None:
    """``GET /`` every 10 ms from its own process; latencies in seconds."""
    latencies = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            client.get("/").raise_for_status()
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
    out.put(latencies)


def heavy(url: str, seconds: float, out: Any) -> None:
    """The heaviest allowed candidates request, back to back."""
    runs = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, headers=HEADERS, timeout=120) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = client.get("/allocation_candidates", params=HEAVY)
            response.raise_for_status()
            runs.append(
                (time.perf_counter() - started, len(response.json()["allocation_requests"]))
            )
    out.put(runs)


async def ordinary(url: str, roots: list[str], seconds: float, concurrency: int) -> list[int]:
    """``concurrency`` requests in flight at all times (provider reads and listings)."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers=HEADERS, timeout=60, limits=limits
    ) as client:

        async def worker(n: int) -> None:
            i = n
            while time.monotonic() < deadline:
                root = roots[i % len(roots)]
                path = f"/resource_providers/{root}" if i % 2 else "/resource_providers"
                response = await client.get(path, params=None if i % 2 else {"in_tree": root})
                statuses.append(response.status_code)
                i += 1

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return statuses


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--folder", type=Path, help="keep the database and server.log here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = args.folder or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        with allotment_server(base / "db.sqlite", base, _free_port()) as (url, _pid):
            roots = build_fleet(url)
            print(f"fleet: 10 hosts x 8 GPUs; {args.concurrency} concurrent ordinary requests")
            results: Any = multiprocessing.Queue()
            workers = [
                multiprocessing.Process(target=probe, args=(url, args.seconds, results)),
                multiprocessing.Process(target=heavy, args=(url, args.seconds, results)),
            ]
            for process in workers:
                process.start()
            statuses = asyncio.run(ordinary(url, roots, args.seconds, args.concurrency))
            first, second = results.get(), results.get()
            for process in workers:
                process.join()
    latencies, runs = (first, second) if isinstance(first[0], float) else (second, first)
    ms = [x * 1000 for x in latencies]
    print(
        f"GET /: {len(ms)} probes, p50 {statistics.median(ms):.1f} ms, "
        f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms"
    )
    print(
        f"heaviest candidates request: {len(runs)} runs, "
        f"median {statistics.median(r[0] for r in runs):.2f} s, "
        f"{max(r[1] for r in runs)} candidates each (cap)"
    )
    errors = sum(1 for s in statuses if s >= 500)
    if errors:
        print("server errors by status:", sorted(s for s in statuses if s >= 500))
    print(
        f"ordinary requests: {len(statuses)} in {args.seconds:g} s "
        f"({len(statuses) / args.seconds:.0f}/s), {errors} server errors"
    )


if __name__ == "__main__":
    main()
