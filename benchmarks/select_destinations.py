"""select_destinations end to end: placement query, filters, weighers, durable claims.

    .venv/bin/python benchmarks/select_destinations.py --hosts 10000 --http \\
        --out /tmp/select.json

The cloud: N compute nodes as placement providers (VCPU at ratio 4, MEMORY_MB with 512 MB
reserved, DISK_GB) in three host shapes, filled 0-80% by existing instances whose
allocations are in placement and whose instance info is in the host cache; three
availability zones, 50 rack aggregates, a tenant-isolated aggregate (5% of hosts) and an
SSD aggregate (30%); CPU and image-type traits, CUSTOM_SSD, and COMPUTE_STATUS_DISABLED on
the 2% disabled hosts; 1% of hosts down; x86_64 and aarch64 hosts, four hypervisor
versions, a few hosts with I/O in progress or failed builds. Nova's default filters, every
weigher, [scheduler] max_placement_results = 1000, SQLite with synchronous=FULL: every
claim is on disk before the answer.

Requests: flavor 2 vCPU / 4 GB / 20 GB, no zone ("plain") and in zone az1 with x86_64
image properties ("az"). Measured, on a fresh copy of the seeded database each time:

  inprocess single  sequential 1-instance SchedulerManager.select_destinations calls
                    (latency percentiles, placements/s)
  inprocess batch   sequential 100-instance calls (placements/s, per-call latency)
  http single/batch the same over POST /scheduler/v1/select_destinations against
                    ``allotment serve`` (one process), client clock; then --clients
                    client processes sending calls at the same time (1-instance, then
                    batches), with the server's and the clients' CPU per placement

The seeded database is written straight into SQL (populating 10,000 hosts and 300,000
instances through the APIs is not what is measured) and cached under --work.
Progress goes to stderr, the JSON summary to stdout (and --out).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import http.client
import json
import multiprocessing
import os
import platform
import pstats
import random
import shutil
import sqlite3
import statistics
import sys
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from allotment.app import Services, build_services
from allotment.config import load_settings
from allotment.context import RequestContext
from allotment.db import bulk
from allotment.db.database import utcnow
from allotment.placement.store.tables import (
    allocations,
    consumers,
    inventories,
    placement_aggregates,
    resource_provider_aggregates,
    resource_provider_traits,
    resource_providers,
)
from allotment.scheduler import store as host_store
from allotment.scheduler.records import Aggregate, HostRecord, HostReport, InstanceInfo
from allotment.scheduler.request import parse_request_spec
from serve import allotment_server

# pCPUs, RAM MB, disk GB, share of hosts.
HOST_SHAPES = [(32, 262144, 960, 0.3), (64, 524288, 1920, 0.5), (96, 786432, 3840, 0.2)]
INSTANCE_FLAVORS = [(1, 2048, 20), (2, 4096, 40), (4, 8192, 80), (8, 16384, 160)]
HV_VERSIONS = [6002000, 7002000, 8002000, 9001000]
CPU_RATIO = 4.0
RESERVED_MB = 512
ZONES = ["az1", "az2", "az3"]
RACKS = 50
PROJECT = "b5d0b8d4b5f84d8e9d7e0c1a2f3e4d5c"
ISOLATED_PROJECT = "0d1f2e3c4b5a69788796a5b4c3d2e1f0"
USER = "6a7b8c9d0e1f4a2b8c3d4e5f6a7b8c9d"
X86_TRAITS = ["HW_CPU_X86_AVX", "HW_CPU_X86_AVX2", "HW_CPU_X86_SSE42", "HW_CPU_X86_AESNI"]
IMAGE_TRAITS = ["COMPUTE_IMAGE_TYPE_QCOW2", "COMPUTE_IMAGE_TYPE_RAW"]
SEED_VERSION = 1  # bump when the seeded cloud changes (invalidates the cache)
# Seeded hosts do not heartbeat: live ones stay up this long after ``fresh_copy`` (down
# ones were seeded an hour before them), however slow a busy machine makes a run.
SERVICE_DOWN_TIME = "1800"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def agg_uuid(name: str) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{name}.bench.allotment"))


def settings_for(folder: Path, db: Path, synchronous: str = "FULL") -> Any:
    return load_settings(
        None,
        {
            "server": {"auth": "noauth", "state_dir": str(folder / "state")},
            "database": {"url": f"sqlite:///{db}", "sqlite_synchronous": synchronous},
            "logging": {"level": "WARNING"},
            "scheduler": {"service_down_time": SERVICE_DOWN_TIME},
        },
        environ={},
    )


# -- seeding ------------------------------------------------------------------------------


def seed(folder: Path, n: int, rng: random.Random) -> Path:
    """A database holding the whole cloud (placement and host cache)."""
    db = folder / "seed.sqlite"
    services = build_services(settings_for(folder, db, "NORMAL"))
    try:
        _seed(services, n, rng)
    finally:
        services.db.dispose()
    return db


def _seed(services: Services, n: int, rng: random.Random) -> None:
    catalog = services.placement.catalog
    catalog.traits.sync(["CUSTOM_SSD"])
    rc = {name: catalog.resource_classes.id_of(name) for name in ("VCPU", "MEMORY_MB", "DISK_GB")}
    trait_id = {
        name: catalog.traits.id_of(name)
        for name in [
            *X86_TRAITS,
            *IMAGE_TRAITS,
            "HW_ARCH_AARCH64",
            "HW_ARCH_X86_64",
            "CUSTOM_SSD",
            "COMPUTE_STATUS_DISABLED",
        ]
    }
    now, clock = utcnow(), time.time()
    metadata: dict[str, dict[str, str]] = {z: {"availability_zone": z} for z in ZONES}
    metadata.update({f"rack{r}": {} for r in range(RACKS)})
    metadata["isolated"] = {"filter_tenant_id": ISOLATED_PROJECT}
    metadata["ssd"] = {"ssd": "true"}
    aggregates = {
        name: Aggregate(agg_uuid(name), name, values, frozenset())
        for name, values in metadata.items()
    }
    agg_ids = {name: i for i, name in enumerate(aggregates, start=1)}
    members: dict[str, set[str]] = {name: set() for name in aggregates}
    providers, invs, traits, rp_aggs, cons, allocs = [], [], [], [], [], []
    records: list[HostRecord] = []
    instances: dict[str, list[InstanceInfo]] = {}
    consumer_id = 0
    for i in range(1, n + 1):
        host = f"compute-{i:05d}"
        rp = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
        pcpus, mem, disk, _ = rng.choices(HOST_SHAPES, [s[3] for s in HOST_SHAPES])[0]
        arm = rng.random() < 0.10
        disabled = rng.random() < 0.02
        down = not disabled and rng.random() < 0.01
        providers.append(
            {
                "id": i,
                "uuid": rp,
                "name": host,
                "generation": 1,
                "root_provider_id": i,
                "parent_provider_id": None,
                "created_at": now,
            }
        )
        for name, total, reserved, ratio in (
            ("VCPU", pcpus, 0, CPU_RATIO),
            ("MEMORY_MB", mem, RESERVED_MB, 1.0),
            ("DISK_GB", disk, 0, 1.0),
        ):
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
        names = ["HW_ARCH_AARCH64"] if arm else ["HW_ARCH_X86_64", *X86_TRAITS]
        names += IMAGE_TRAITS
        ssd = rng.random() < 0.30
        if ssd:
            names.append("CUSTOM_SSD")
        if disabled:
            names.append("COMPUTE_STATUS_DISABLED")
        traits += [
            {"resource_provider_id": i, "trait_id": trait_id[t], "created_at": now} for t in names
        ]
        host_aggs = [ZONES[i % 3], f"rack{i % RACKS}"] + (["ssd"] if ssd else [])
        if rng.random() < 0.05:
            host_aggs.append("isolated")
        for name in host_aggs:
            members[name].add(host)
            rp_aggs.append(
                {"resource_provider_id": i, "aggregate_id": agg_ids[name], "created_at": now}
            )
        # Existing instances, up to a random fill level.
        target = rng.uniform(0.0, 0.8)
        used = [0, 0, 0]
        infos = []
        while True:
            fv, fm, fd = rng.choice(INSTANCE_FLAVORS)
            if (
                used[0] + fv > pcpus * CPU_RATIO * target
                or used[1] + fm > mem * target
                or used[2] + fd > disk * target
            ):
                break
            used = [used[0] + fv, used[1] + fm, used[2] + fd]
            consumer_id += 1
            cuuid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
            cons.append(
                {
                    "id": consumer_id,
                    "uuid": cuuid,
                    "project_id": PROJECT,
                    "user_id": USER,
                    "generation": 1,
                    "consumer_type_id": None,
                    "created_at": now,
                }
            )
            for name, amount in (("VCPU", fv), ("MEMORY_MB", fm), ("DISK_GB", fd)):
                allocs.append(
                    {
                        "resource_provider_id": i,
                        "consumer_id": consumer_id,
                        "resource_class_id": rc[name],
                        "used": amount,
                        "created_at": now,
                    }
                )
            infos.append(InstanceInfo(uuid=cuuid, project_id=PROJECT, flavor_name=f"f{fv}"))
        instances[host] = infos
        if arm:
            supported = [("aarch64", "kvm", "hvm")]
            cpu_info: dict[str, Any] = {"arch": "aarch64", "model": "Neoverse-N1", "vendor": "ARM"}
        else:
            supported = [("x86_64", "kvm", "hvm"), ("i686", "kvm", "hvm")]
            cpu_info = {"arch": "x86_64", "model": "Icelake-Server", "vendor": "Intel"}
        cpu_info["features"] = ["avx", "avx2", "sse4.2", "aes", "vmx"]
        report = HostReport(
            compute_node_uuid=rp,
            hypervisor_type="QEMU",
            hypervisor_version=rng.choice(HV_VERSIONS),
            host_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            cpu_info=cpu_info,
            supported_instances=supported,
            io_ops=0 if rng.random() > 0.05 else rng.randint(1, 4),
            failed_builds=0 if rng.random() > 0.02 else rng.randint(1, 3),
            cpu_allocation_ratio=CPU_RATIO,
            disabled=disabled,
            disabled_reason="maintenance" if disabled else None,
        )
        # Down hosts stop heart-beating an hour before the run; the others keep beating
        # (the benchmark refreshes every heartbeat before it starts).
        beat = clock - 3600 if down else clock
        records.append(HostRecord(host, host, report, beat, beat))
        if i % 2000 == 0:
            log(f"  {i} hosts generated")
    with services.db.write() as conn:  # one transaction, a few multi-row statements a table
        bulk.insert_rows(conn, resource_providers, providers)
        bulk.insert_rows(
            conn,
            placement_aggregates,
            [
                {"id": agg_ids[name], "uuid": a.uuid, "created_at": now}
                for name, a in aggregates.items()
            ],
        )
        bulk.insert_rows(conn, inventories, invs)
        bulk.insert_rows(conn, resource_provider_traits, traits)
        bulk.insert_rows(conn, resource_provider_aggregates, rp_aggs)
        bulk.insert_rows(conn, consumers, cons)
        bulk.insert_rows(conn, allocations, allocs)
        log(f"  placement: {n} providers, {len(cons)} consumers, {len(allocs)} allocations")
        host_store.insert_all(
            conn,
            records,
            [
                Aggregate(a.uuid, a.name, a.metadata, frozenset(members[name]))
                for name, a in aggregates.items()
            ],
            instances,
            now,
        )
    log(f"  host cache: {len(records)} hosts, {len(aggregates)} aggregates")


def seeded(work: Path, n: int, seed_value: int) -> Path:
    folder = work / f"cloud-{n}-{seed_value}-v{SEED_VERSION}"
    db = folder / "seed.sqlite"
    if not db.exists():
        log(f"seeding {n} hosts into {db}")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.perf_counter()
        seed(folder, n, random.Random(seed_value))
        log(f"seeded in {time.perf_counter() - started:.1f}s")
    return db


def fresh_copy(seed_db: Path, folder: Path) -> Path:
    """A copy of the seeded database with every heartbeat of a live host made current."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    db = folder / "db.sqlite"
    shutil.copy(seed_db, db)
    with sqlite3.connect(db) as conn:
        # Live hosts were seeded beating together; down ones an hour before that.
        live = (
            "UPDATE scheduler_hosts SET heartbeat = ? "
            "WHERE heartbeat > (SELECT MAX(heartbeat) FROM scheduler_hosts) - 600"
        )
        conn.execute(live, (time.time(),))
    return db


# -- requests -----------------------------------------------------------------------------


def spec_body(variant: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "project_id": PROJECT,
        "user_id": USER,
        "flavor": {"name": "bench.2c4g20", "vcpus": 2, "memory_mb": 4096, "root_gb": 20},
        "image": {"id": "7d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a", "disk_format": "qcow2"},
    }
    if variant == "az":
        body["availability_zone"] = "az1"
        body["image"]["properties"] = {
            "hw_architecture": "x86_64",
            "img_hv_type": "kvm",
            "hw_vm_mode": "hvm",
            "os_type": "linux",
        }
    return body


def phases(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """(name, instances per call, calls) of each measured phase."""
    found = [("single", 1, args.single), ("batch", args.batch, args.batches)]
    return [phase for phase in found if phase[2] > 0]


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def summarize(seconds: list[float], per_call: int, wall: float) -> dict[str, Any]:
    return {
        **percentiles(seconds),
        "instances_per_call": per_call,
        "placements_per_s": round(len(seconds) * per_call / wall, 1),
    }


def run_inprocess(db: Path, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    services = build_services(settings_for(folder, db))
    services.start()
    try:
        manager = services.scheduler
        assert manager is not None
        ctx = RequestContext.internal()
        services.placement.index.ensure_loaded()
        out: dict[str, Any] = {}
        for variant in args.variants.split(","):
            spec = parse_request_spec(spec_body(variant))

            def call(count: int, spec: Any = spec) -> float:
                uuids = [str(uuidlib.uuid4()) for _ in range(count)]
                started = time.perf_counter()
                manager.select_destinations(ctx, spec, uuids, return_alternates=True)
                return time.perf_counter() - started

            for _ in range(args.warmup):
                call(1)
            gc.collect()
            gc.freeze()  # what a long-running server does after start-up
            profile = cProfile.Profile() if args.profile else None
            results: dict[str, Any] = {}
            for name, count, calls in phases(args):
                if profile is not None:
                    profile.enable()
                started = time.perf_counter()
                seconds = [call(count) for _ in range(calls)]
                wall = time.perf_counter() - started
                if profile is not None:
                    profile.disable()
                results[name] = summarize(seconds, count, wall)
                log(f"in-process {variant:5s} {name:6s} {results[name]}")
            gc.unfreeze()
            if profile is not None:
                pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
            out[variant] = results
        return out
    finally:
        services.stop()


class Caller:
    """POSTs ``select_destinations`` calls of ``count`` fresh instances over one kept-alive
    connection: with ``lean``, http.client and json (what a caller costs at least), else
    httpx (what the sequential phases use)."""

    def __init__(self, url: str, spec: dict[str, Any], lean: bool) -> None:
        self.parts = urlsplit(url)
        self.spec = spec
        self.headers = {"x-auth-token": "admin", "content-type": "application/json"}
        self.lean: http.client.HTTPConnection | None = None
        self.client: httpx.Client | None = None
        if lean:
            self.lean = http.client.HTTPConnection(self.parts.hostname, self.parts.port)
        else:
            self.client = httpx.Client(timeout=120, trust_env=False)

    def __call__(self, count: int) -> float:
        body = {
            "instance_uuids": [str(uuidlib.uuid4()) for _ in range(count)],
            "return_alternates": True,
            "request_spec": self.spec,
        }
        started = time.perf_counter()
        if self.lean is not None:
            self.lean.request("POST", self.parts.path, json.dumps(body), self.headers)
            response = self.lean.getresponse()
            status, text = response.status, response.read()
        else:
            assert self.client is not None
            found = self.client.post(self.parts.geturl(), json=body, headers=self.headers)
            status, text = found.status_code, found.content
        elapsed = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {text[:2000]!r}")
        return elapsed

    def close(self) -> None:
        if self.lean is not None:
            self.lean.close()
        if self.client is not None:
            self.client.close()


def client_process(
    url: str,
    spec: dict[str, Any],
    lean: bool,
    count: int,
    calls: int,
    start: Any,
    results: Any,
) -> None:
    """One client of ``concurrently``, in its own process (as Nova's conductors are): its
    latencies and the CPU seconds it spent sending them."""
    caller = Caller(url, spec, lean)
    try:
        caller(1)  # connected before the clock starts
        start.wait()
        cpu = time.process_time()
        seconds = [caller(count) for _ in range(calls)]
        results.put((seconds, time.process_time() - cpu))
    except BaseException as exc:
        start.abort()  # the parent's wait breaks instead of waiting for this client
        results.put(exc)
        raise
    finally:
        caller.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def concurrently(
    url: str,
    spec: dict[str, Any],
    server_pid: int,
    args: argparse.Namespace,
    count: int,
    calls: int,
) -> dict[str, Any]:
    """``--clients`` client processes sending ``calls`` calls of ``count`` instances each,
    at once; with the CPU the clients and the server spent, per placement."""
    clients = args.clients
    mp = multiprocessing.get_context("fork")
    start = mp.Barrier(clients + 1)
    results = mp.Queue()
    processes = [
        mp.Process(
            target=client_process,
            args=(url, spec, args.client == "lean", count, calls, start, results),
        )
        for _ in range(clients)
    ]
    for process in processes:
        process.start()
    start.wait()
    started, server_cpu = time.perf_counter(), cpu_seconds(server_pid)
    seconds: list[float] = []
    client_cpu = 0.0
    for _ in processes:
        found = results.get()
        if isinstance(found, BaseException):
            raise RuntimeError("a client failed") from found
        seconds.extend(found[0])
        client_cpu += found[1]
    wall = time.perf_counter() - started
    server_cpu = cpu_seconds(server_pid) - server_cpu
    for process in processes:
        process.join()
    placements = len(seconds) * count
    return {
        **summarize(seconds, count, wall),
        "clients": clients,
        "client": args.client,
        "server_cpu_ms_per_placement": round(server_cpu * 1000 / placements, 3),
        "client_cpu_ms_per_placement": round(client_cpu * 1000 / placements, 3),
    }


def run_http(db: Path, folder: Path, args: argparse.Namespace, coalesce: bool) -> dict[str, Any]:
    env = {
        "ALLOTMENT_DATABASE__SQLITE_SYNCHRONOUS": "FULL",
        "ALLOTMENT_LOGGING__LEVEL": "WARNING",
        "ALLOTMENT_SCHEDULER__COALESCE": "true" if coalesce else "false",
        "ALLOTMENT_SCHEDULER__SERVICE_DOWN_TIME": SERVICE_DOWN_TIME,
    }
    label = f"HTTP coalesce={'on' if coalesce else 'off'}"
    with allotment_server(db, folder, args.port, env) as (base, server_pid):
        url = f"{base}/scheduler/v1/select_destinations"
        out: dict[str, Any] = {}
        for variant in args.variants.split(","):
            spec = spec_body(variant)
            call = Caller(url, spec, args.client == "lean")
            for _ in range(args.warmup):
                call(1)
            results: dict[str, Any] = {}
            for name, count, calls in phases(args):
                started = time.perf_counter()
                seconds = [call(count) for _ in range(calls)]
                results[name] = summarize(seconds, count, time.perf_counter() - started)
                log(f"{label} {variant:5s} {name:6s} {results[name]}")
            if args.clients > 1 and args.single:
                per_client = max(1, args.single // args.clients)
                found = concurrently(url, spec, server_pid, args, 1, per_client)
                results["single_concurrent"] = found
                log(f"{label} {variant:5s} {args.clients} clients x 1 {found}")
                if "batch" in results:
                    results["single_concurrent_over_batch"] = round(
                        found["placements_per_s"] / results["batch"]["placements_per_s"], 3
                    )
            if args.clients > 1 and args.batches:
                found = concurrently(url, spec, server_pid, args, args.batch, args.batches)
                results["batch_concurrent"] = found
                log(f"{label} {variant:5s} {args.clients} clients x {args.batch} {found}")
            call.close()
            out[variant] = results
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--work", default="/tmp/allotment-select-bench")
    parser.add_argument("--variants", default="plain,az")
    parser.add_argument("--single", type=int, default=500, help="1-instance calls per variant")
    parser.add_argument("--batch", type=int, default=100, help="instances per batch call")
    parser.add_argument("--batches", type=int, default=20, help="batch calls per variant")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--http", action="store_true", help="also measure over HTTP")
    parser.add_argument("--port", type=int, default=18995)
    parser.add_argument(
        "--clients",
        type=int,
        default=4,
        help="concurrent HTTP client processes for the last phases: 1-instance calls "
        "(--single split between them), then --batches calls each",
    )
    parser.add_argument(
        "--client",
        choices=["lean", "httpx"],
        default="lean",
        help="the concurrent clients' HTTP library: http.client (lean) or httpx",
    )
    parser.add_argument(
        "--coalesce",
        default="on",
        help="[scheduler] coalesce for the HTTP runs: on, off, or on,off (side by side)",
    )
    parser.add_argument("--no-inprocess", action="store_true", help="skip the in-process run")
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process runs")
    parser.add_argument("--out", help="write the JSON summary here too")
    args = parser.parse_args()
    work = Path(args.work)
    seed_db = seeded(work, args.hosts, args.seed)
    result: dict[str, Any] = {
        "meta": {
            "python": platform.python_version(),
            "argv": sys.argv,
            "hosts": args.hosts,
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
        },
    }
    run = work / "run"
    db = fresh_copy(seed_db, run)
    if not args.no_inprocess:
        log("in-process run")
        result["inprocess"] = run_inprocess(db, run, args)
    if args.http:
        for mode in args.coalesce.split(","):
            db = fresh_copy(seed_db, run)
            log(f"HTTP run, coalesce {mode}")
            key = "http" if mode == "on" else f"http_coalesce_{mode}"
            result[key] = run_http(db, run, args, coalesce=mode == "on")
    result["meta"]["load_after"] = os.getloadavg()  # the machine may be shared
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
