"""Allocation-candidate latency from the capacity index, in-process and over HTTP.

    .venv/bin/python benchmarks/candidates.py --providers 1000 --providers 10000 \\
        --providers 100000 --wide-hosts 1000 --http --out /tmp/candidates.json

Flat: N compute nodes with placement_bench.py's workload (VCPU 64 ratio 4, MEMORY_MB 262144
reserved 4096, DISK_GB 2000; 10% in aggregate A, 30% HW_CPU_X86_AVX2, 5% CUSTOM_GPU) and
its three queries (VCPU:2,MEMORY_MB:4096,DISK_GB:20 plain; + required + member_of; limit=10).
Wide tree: hosts with VCPU and 8 identical VGPU children, asked for VCPU:2 plus 6 granular
VGPU:1 groups with group_policy=isolate and limit=1000; the answer is checked (distinct
GPUs per candidate, candidates spread over hosts).

Providers are written straight into a fresh SQLite database (populating 100,000 providers
over HTTP would take the better part of an hour and is not what is measured here), then the
index is built from it exactly as at start-up. In-process times are
``PlacementService.allocation_candidates`` (the call the embedded scheduler makes); HTTP
times are a client's, clock stopped once the body is read (as placement_bench.py), against
``allotment serve`` on the same database. Index memory is what tracemalloc sees allocated
by building it. Progress goes to stderr, the JSON summary to stdout (and ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from allotment.app import Services, build_services
from allotment.config import load_settings
from allotment.db.database import utcnow
from allotment.placement.model import CandidateRequest, RequestGroup
from allotment.placement.store.tables import (
    inventories,
    placement_aggregates,
    resource_provider_aggregates,
    resource_provider_traits,
    resource_providers,
)
from serve import allotment_server

# (total, reserved, allocation_ratio); --classes takes the first N (the queries use 3).
FLAT_INVENTORY = {
    "VCPU": (64, 0, 4.0),
    "MEMORY_MB": (262144, 4096, 1.0),
    "DISK_GB": (2000, 0, 1.0),
    "VGPU": (8, 0, 1.0),
    "SRIOV_NET_VF": (16, 0, 1.0),
    "NET_BW_EGR_KILOBIT_PER_SEC": (10_000_000, 0, 1.0),
}
CLAIM = {"VCPU": 2, "MEMORY_MB": 4096, "DISK_GB": 20}
AGG_A = "a99e9b2e-0c41-4d1b-8c7a-7b1a5a0f2c01"
WIDE_GPUS = 8
WIDE_GROUPS = 6
WIDE_LIMIT = 1000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def stats(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[max(0, -(-9 * len(ordered) // 10) - 1)] * 1000, 3),
        "min_ms": round(ordered[0] * 1000, 3),
    }


def timed(call: Callable[[], Any], samples: int) -> tuple[dict[str, float], Any]:
    result = call()  # warm-up
    seconds = []
    for _ in range(samples):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return stats(seconds), result


def services_for(folder: Path) -> Services:
    settings = load_settings(
        None,
        {
            "server": {"auth": "noauth", "state_dir": str(folder / "state")},
            "database": {
                "url": f"sqlite:///{folder / 'db.sqlite'}",
                "sqlite_synchronous": "NORMAL",
            },
        },
        environ={},
    )
    return build_services(settings)


def _insert(services: Services, table: Any, rows: list[dict[str, Any]]) -> None:
    with services.db.write() as conn:
        for start in range(0, len(rows), 20000):
            conn.execute(table.insert(), rows[start : start + 20000])


def seed_flat(services: Services, n: int, rng: random.Random, classes: int) -> dict[str, int]:
    catalog = services.placement.catalog
    catalog.traits.sync(["CUSTOM_GPU"])
    now = utcnow()
    inventory = dict(list(FLAT_INVENTORY.items())[:classes])
    rc = {name: catalog.resource_classes.id_of(name) for name in inventory}
    avx2, gpu = catalog.traits.id_of("HW_CPU_X86_AVX2"), catalog.traits.id_of("CUSTOM_GPU")
    providers, invs, traits, aggs = [], [], [], []
    counts = {"aggregate_a_and_avx2": 0}
    for i in range(1, n + 1):
        providers.append(
            {
                "id": i,
                "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "name": f"cn-{i:06d}",
                "generation": 0,
                "root_provider_id": i,
                "parent_provider_id": None,
                "created_at": now,
            }
        )
        for name, (total, reserved, ratio) in inventory.items():
            invs.append(
                {
                    "resource_provider_id": i,
                    "resource_class_id": rc[name],
                    "total": total,
                    "reserved": reserved,
                    "min_unit": 1,
                    "max_unit": total,
                    "step_size": 1,
                    "allocation_ratio": ratio,
                    "created_at": now,
                }
            )
        in_a, has_avx2 = rng.random() < 0.10, rng.random() < 0.30
        if in_a:
            aggs.append({"resource_provider_id": i, "aggregate_id": 1, "created_at": now})
        if has_avx2:
            traits.append({"resource_provider_id": i, "trait_id": avx2, "created_at": now})
        if rng.random() < 0.05:
            traits.append({"resource_provider_id": i, "trait_id": gpu, "created_at": now})
        counts["aggregate_a_and_avx2"] += in_a and has_avx2
    _insert(services, resource_providers, providers)
    _insert(services, placement_aggregates, [{"id": 1, "uuid": AGG_A, "created_at": now}])
    _insert(services, inventories, invs)
    _insert(services, resource_provider_traits, traits)
    _insert(services, resource_provider_aggregates, aggs)
    return counts


def seed_wide(services: Services, hosts: int) -> None:
    catalog = services.placement.catalog
    now = utcnow()
    vcpu, vgpu = (catalog.resource_classes.id_of(n) for n in ("VCPU", "VGPU"))
    providers, invs = [], []
    pid = 0
    for h in range(hosts):
        pid += 1
        root = pid
        providers.append(_provider(pid, f"host-{h:05d}", root, None, now))
        invs.append(_inventory(pid, vcpu, 64, now))
        for g in range(WIDE_GPUS):
            pid += 1
            providers.append(_provider(pid, f"host-{h:05d}-gpu{g}", root, root, now))
            invs.append(_inventory(pid, vgpu, 1, now))
    _insert(services, resource_providers, providers)
    _insert(services, inventories, invs)


def _provider(pid: int, name: str, root: int, parent: int | None, now: Any) -> dict[str, Any]:
    return {
        "id": pid,
        "uuid": str(uuid.uuid4()),
        "name": name,
        "generation": 0,
        "root_provider_id": root,
        "parent_provider_id": parent,
        "created_at": now,
    }


def _inventory(pid: int, rc_id: int | None, total: int, now: Any) -> dict[str, Any]:
    return {
        "resource_provider_id": pid,
        "resource_class_id": rc_id,
        "total": total,
        "reserved": 0,
        "min_unit": 1,
        "max_unit": total,
        "step_size": 1,
        "allocation_ratio": 1.0,
        "created_at": now,
    }


def build_index(services: Services) -> dict[str, float]:
    tracemalloc.start()
    start = time.perf_counter()
    services.placement.index.rebuild()
    seconds = time.perf_counter() - start
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "build_seconds": round(seconds, 3),
        "memory_mb": round(current / 2**20, 1),
        "build_peak_mb": round(peak / 2**20, 1),
    }


def server_memory_mb(pid: int) -> dict[str, float]:
    """Resident set size now and at its peak (VmHWM), from /proc."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": found["VmRSS"], "peak_rss_mb": found["VmHWM"]}


@contextmanager
def serving(folder: Path) -> Iterator[tuple[str, int]]:
    with allotment_server(folder / "db.sqlite", folder, 38000 + os.getpid() % 1000) as served:
        yield served


def http_get(session: requests.Session, url: str, params: list[tuple[str, str]]) -> Any:
    resp = session.get(url + "/allocation_candidates", params=params)
    resp.raise_for_status()
    return resp.content


def flat(n: int, samples: int, http: bool, seed: int, classes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="allotment-bench-") as tmp:
        folder = Path(tmp)
        services = services_for(folder)
        log(f"flat {n}: seeding")
        counts = seed_flat(services, n, random.Random(seed), classes)
        index = build_index(services)
        log(f"flat {n}: index {index}")
        base = dict(CLAIM)
        queries = {
            "basic": (CandidateRequest(groups=(RequestGroup(resources=base),)), n),
            "required_avx2_member_of_agg_a": (
                CandidateRequest(
                    groups=(
                        RequestGroup(
                            resources=base,
                            required_traits=(frozenset({"HW_CPU_X86_AVX2"}),),
                            member_of=(frozenset({AGG_A}),),
                        ),
                    )
                ),
                counts["aggregate_a_and_avx2"],
            ),
            "limit_10": (CandidateRequest(groups=(RequestGroup(resources=base),), limit=10), 10),
        }
        out: dict[str, Any] = {
            "providers": n,
            "resource_classes": classes,
            "index": index,
            "in_process": {},
        }
        for name, (request, expected) in queries.items():
            timing, found = timed(
                lambda request=request: services.placement.allocation_candidates(request),
                samples,
            )
            timing["candidates"] = len(found)
            timing["candidates_ok"] = len(found) == min(expected, n)
            out["in_process"][name] = timing
            log(f"flat {n}: in-process {name}: {timing}")
        services.db.dispose()
        if http:
            out["http"] = {}
            params = {
                "basic": [("resources", "VCPU:2,MEMORY_MB:4096,DISK_GB:20")],
                "required_avx2_member_of_agg_a": [
                    ("resources", "VCPU:2,MEMORY_MB:4096,DISK_GB:20"),
                    ("required", "HW_CPU_X86_AVX2"),
                    ("member_of", AGG_A),
                ],
                "limit_10": [("resources", "VCPU:2,MEMORY_MB:4096,DISK_GB:20"), ("limit", "10")],
            }
            with serving(folder) as (url, pid), requests.Session() as session:
                session.trust_env = False
                session.headers.update(
                    {"x-auth-token": "admin", "openstack-api-version": "placement 1.39"}
                )
                # The index is built in the background at start-up; wait for it.
                http_get(session, url, params["limit_10"])
                out["server_memory_indexed"] = server_memory_mb(pid)
                log(f"flat {n}: server memory with the index built {out['server_memory_indexed']}")
                for name, query in params.items():
                    timing, body = timed(lambda q=query: http_get(session, url, q), samples)
                    timing["candidates"] = len(json.loads(body)["allocation_requests"])
                    timing["response_bytes"] = len(body)
                    out["http"][name] = timing
                    log(f"flat {n}: http {name}: {timing}")
                out["server_memory"] = server_memory_mb(pid)
                log(f"flat {n}: server memory {out['server_memory']}")
        return out


def wide(hosts: int, samples: int, http: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="allotment-bench-") as tmp:
        folder = Path(tmp)
        services = services_for(folder)
        log(f"wide {hosts}x{WIDE_GPUS}: seeding")
        seed_wide(services, hosts)
        index = build_index(services)
        groups = (
            RequestGroup(resources={"VCPU": 2}),
            *tuple(
                RequestGroup(suffix=f"_GPU{k}", resources={"VGPU": 1}) for k in range(WIDE_GROUPS)
            ),
        )
        request = CandidateRequest(groups=groups, group_policy="isolate", limit=WIDE_LIMIT)
        timing, found = timed(lambda: services.placement.allocation_candidates(request), samples)
        hosts_used, distinct_ok = set(), True
        for candidate in found.requests():
            gpus = [mapped[0] for suffix, mapped in candidate.mappings.items() if suffix]
            distinct_ok &= len(set(gpus)) == WIDE_GROUPS
            hosts_used.add(candidate.mappings[""][0])
        check = {
            "candidates": len(found),
            "hosts": len(hosts_used),
            "distinct_gpus_per_candidate": distinct_ok,
            "allocations_distinct": len({tuple(sorted(r.allocations)) for r in found.requests()})
            == len(found),
        }
        out: dict[str, Any] = {
            "hosts": hosts,
            "gpus_per_host": WIDE_GPUS,
            "granular_groups": WIDE_GROUPS,
            "limit": WIDE_LIMIT,
            "index": index,
            "in_process": {**timing, **check},
        }
        log(f"wide: in-process {out['in_process']}")
        services.db.dispose()
        if http:
            query = [
                ("resources", "VCPU:2"),
                ("group_policy", "isolate"),
                ("limit", str(WIDE_LIMIT)),
            ]
            query += [(f"resources_GPU{k}", "VGPU:1") for k in range(WIDE_GROUPS)]
            with serving(folder) as (url, _), requests.Session() as session:
                session.trust_env = False
                session.headers.update(
                    {"x-auth-token": "admin", "openstack-api-version": "placement 1.39"}
                )
                timing, body = timed(lambda: http_get(session, url, query), samples)
                timing["candidates"] = len(json.loads(body)["allocation_requests"])
                out["http"] = timing
                log(f"wide: http {timing}")
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers", type=int, action="append", help="flat providers (repeat)")
    parser.add_argument("--wide-hosts", type=int, default=0, help="hosts of the wide-tree case")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--http", action="store_true", help="also measure over HTTP")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--classes", type=int, default=3, choices=range(3, 7), help="inventory classes per provider"
    )
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    summary: dict[str, Any] = {
        "benchmark": "candidates",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "flat": [
            flat(n, args.samples, args.http, args.seed, args.classes) for n in args.providers or []
        ],
    }
    if args.wide_hosts:
        summary["wide_tree"] = wide(args.wide_hosts, args.samples, args.http)
    summary["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
