"""Filters + weighers over N synthetic hosts, in-process: allotment's scheduler core.

The cluster mirrors ``../shared/tools/nova_filter_bench.py`` (same host shapes, fill
levels, flavor mix, 10% of hosts in aggregate az1, 2% disabled, 1% down, 10% aarch64,
hypervisor versions, io_ops and failed builds), with Nova's default filters and every
weigher, so the numbers compare with that tool's run of Nova 34's own code:

    .venv/bin/python benchmarks/scheduler_filters.py --hosts 1000 --hosts 10000
    /tmp/nova-venv/bin/python ../shared/tools/nova_filter_bench.py --hosts 1000 --hosts 10000

What is timed (placement is not involved: every host is offered as a candidate, as in the
Nova tool):

  snapshot_build   HostSnapshot.build from host records (start-up / cache reset; Nova
                   rebuilds its host states on every request instead)
  snapshot_derive  the next snapshot after one host heartbeats (what a request pays at
                   most when host reports arrived since the previous one)
  prepare          request spec -> placement query (extra specs, request filters)
  sorted_hosts     one instance: start a cycle, filter, weigh, rank (Nova's
                   _get_sorted_hosts on pre-built host states)
  batch            B instances: B x (filter + weigh + rank + consume), then alternates
                   (Nova's _legacy_find_hosts; reported per instance too)
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from allotment.config import load_settings
from allotment.context import RequestContext
from allotment.scheduler.pipeline import Pipeline
from allotment.scheduler.placement import Candidates
from allotment.scheduler.records import Aggregate, HostRecord, HostReport, InstanceInfo
from allotment.scheduler.request import RequestSpec, parse_request_spec
from allotment.scheduler.snapshot import HostSnapshot

HOST_SHAPES = [(32, 262144, 960, 0.3), (64, 524288, 1920, 0.5), (96, 786432, 3840, 0.2)]
INSTANCE_FLAVORS = [(1, 2048, 20), (2, 4096, 40), (4, 8192, 80), (8, 16384, 160)]
HV_VERSIONS = [6002000, 7002000, 8002000, 9001000]
CPU_RATIO = 4.0
RESERVED_HOST_MEMORY_MB = 512
AZ1 = "0f0e0d0c-0b0a-4909-8807-000000000a21"
PROJECT = "b5d0b8d4b5f84d8e9d7e0c1a2f3e4d5c"


def build_cluster(
    n: int, seed: int, now: float
) -> tuple[list[HostRecord], list[Aggregate], dict[str, dict[str, InstanceInfo]], Candidates]:
    rng = random.Random(seed)
    records: list[HostRecord] = []
    instances: dict[str, dict[str, InstanceInfo]] = {}
    in_az1: list[str] = []
    free: list[tuple[float, float, float]] = []
    for i in range(n):
        host = f"compute-{i:05d}"
        pcpus, mem, disk, _ = rng.choices(HOST_SHAPES, [s[3] for s in HOST_SHAPES])[0]
        arm = rng.random() < 0.10
        target = rng.uniform(0.0, 0.8)
        vcpus_used = ram_used = disk_used = 0
        infos: dict[str, InstanceInfo] = {}
        while True:
            fv, fm, fd = rng.choice(INSTANCE_FLAVORS)
            if (
                vcpus_used + fv > pcpus * CPU_RATIO * target
                or ram_used + fm > mem * target
                or disk_used + fd > disk * target
            ):
                break
            vcpus_used, ram_used, disk_used = vcpus_used + fv, ram_used + fm, disk_used + fd
            uuid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
            infos[uuid] = InstanceInfo(uuid=uuid, project_id=PROJECT)
        instances[host] = infos
        failed = 0 if rng.random() > 0.02 else rng.randint(1, 3)
        io = 0 if rng.random() > 0.05 else rng.randint(1, 4)
        r = rng.random()
        disabled = r < 0.02
        down = not disabled and r < 0.03
        if arm:
            supported = [("aarch64", "kvm", "hvm")]
            cpu_info = {"arch": "aarch64", "model": "Neoverse-N1", "vendor": "ARM"}
        else:
            supported = [("x86_64", "kvm", "hvm"), ("i686", "kvm", "hvm")]
            cpu_info = {
                "arch": "x86_64",
                "model": "Icelake-Server",
                "vendor": "Intel",
                "maxphysaddr": {"mode": "emulate", "bits": 46},
            }
        cpu_info["features"] = ["avx", "avx2", "sse4.2", "aes", "vmx"]
        report = HostReport(
            compute_node_uuid=str(uuidlib.UUID(int=rng.getrandbits(128), version=4)),
            hypervisor_type="QEMU",
            hypervisor_version=rng.choice(HV_VERSIONS),
            host_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            cpu_info=cpu_info,
            supported_instances=supported,
            io_ops=io,
            failed_builds=failed,
            cpu_allocation_ratio=CPU_RATIO,
            disabled=disabled,
            disabled_reason="maintenance" if disabled else None,
        )
        heartbeat = now - 3600 if down else now - rng.randint(0, 9)
        records.append(HostRecord(host, f"{host}.example.org", report, heartbeat, heartbeat))
        free.append(
            (
                mem - ram_used - RESERVED_HOST_MEMORY_MB,
                (disk - disk_used) * 1024,
                pcpus * CPU_RATIO - vcpus_used,
            )
        )
        if rng.random() < 0.10:
            in_az1.append(host)
    aggregates = [Aggregate(AZ1, "az1-agg", {"availability_zone": "az1"}, frozenset(in_az1))]
    candidates = Candidates(
        [r.uuid for r in records],
        np.array([f[0] for f in free]),
        np.array([f[1] for f in free]),
        np.array([f[2] for f in free]),
    )
    return records, aggregates, instances, candidates


def make_spec(variant: str, members: list[str]) -> RequestSpec:
    body: dict[str, Any] = {
        "project_id": PROJECT,
        "user_id": "6a7b8c9d0e1f4a2b8c3d4e5f6a7b8c9d",
        "flavor": {"name": "bench.2c4g20", "vcpus": 2, "memory_mb": 4096, "root_gb": 20},
        "image": {"id": "7d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a", "disk_format": "qcow2"},
    }
    if variant == "az_image":
        body["availability_zone"] = "az1"
        body["image"]["properties"] = {
            "hw_architecture": "x86_64",
            "img_hv_type": "kvm",
            "hw_vm_mode": "hvm",
            "hw_disk_bus": "virtio",
            "hw_vif_model": "virtio",
            "hw_machine_type": "q35",
            "hw_qemu_guest_agent": True,
            "os_distro": "ubuntu",
            "os_type": "linux",
        }
    if variant == "anti_affinity":
        body["instance_group"] = {"policy": "anti-affinity", "members": members}
    return parse_request_spec(body)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3


def summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    wall = sorted(s[0] for s in samples)
    cpu = sorted(s[1] for s in samples)
    return {
        "runs": len(wall),
        "median_ms": round(statistics.median(wall), 3),
        "p90_ms": round(wall[max(0, int(len(wall) * 0.9 + 0.5) - 1)], 3),
        "min_ms": round(wall[0], 3),
        "cpu_median_ms": round(statistics.median(cpu), 3),
    }


def bench(n: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    now = time.time()
    t0 = time.perf_counter()
    records, aggregates, instances, candidates = build_cluster(n, args.seed, now)
    built_s = time.perf_counter() - t0
    count = sum(len(v) for v in instances.values())
    print(f"# N={n} cluster built in {built_s:.1f}s ({count} instances)", flush=True)
    settings = load_settings(None, {}, environ={})
    pipeline = Pipeline.from_settings(settings)
    ctx = RequestContext.internal()
    ops: dict[str, list[tuple[float, float]]] = {"snapshot_build": [], "snapshot_derive": []}
    snapshot = HostSnapshot.empty()
    for _ in range(max(3, args.runs // 5)):
        snapshot, wall, cpu = timed(lambda: HostSnapshot.build(records, aggregates, instances))
        ops["snapshot_build"].append((wall, cpu))
    for i in range(args.runs):
        beat = {i % n: replace(records[i % n], heartbeat=now + i)}
        _, wall, cpu = timed(partial(snapshot.derive, beat, generation=i))
        ops["snapshot_derive"].append((wall, cpu))
    hosts = list(instances)
    members = [next(iter(instances[h])) for h in hosts[:: max(1, n // 10)][:10] if instances[h]]
    results = []
    rng = random.Random(args.seed)
    for variant in args.variants.split(","):
        spec = make_spec(variant, members)
        samples: dict[str, list[tuple[float, float]]] = {
            "prepare": [],
            "sorted_hosts": [],
            "batch": [],
        }
        chosen = ""
        for run in range(args.warmup + args.runs):
            prepared, w_prep, c_prep = timed(partial(pipeline.prepare, ctx, spec, snapshot))

            def one(prepared: Any = prepared) -> str:
                cycle = pipeline.start(prepared, snapshot, candidates, now=now, rng=rng)
                return cycle.next_hosts().first.host

            chosen, w_one, c_one = timed(one)
            if run >= args.warmup:
                samples["prepare"].append((w_prep, c_prep))
                samples["sorted_hosts"].append((w_one, c_one))
        for run in range(args.batch_warmup + args.batch_runs):
            uuids = [str(uuidlib.uuid4()) for _ in range(args.batch)]
            prepared = pipeline.prepare(ctx, spec, snapshot)

            def batch(prepared: Any = prepared, uuids: list[str] = uuids) -> int:
                cycle = pipeline.start(prepared, snapshot, candidates, uuids, now=now, rng=rng)
                picked = []
                for uuid in uuids:
                    first = cycle.next_hosts(uuid).first
                    cycle.consume(first.position, uuid)
                    picked.append(first.position)
                cycle.alternates(picked, settings.max_attempts - 1)
                return len(picked)

            _, w_batch, c_batch = timed(batch)
            if run >= args.batch_warmup:
                samples["batch"].append((w_batch, c_batch))
        result: dict[str, Any] = {"variant": variant, "hosts": n, "ops": {}}
        for name, values in {**ops, **samples}.items():
            if values:
                result["ops"][name] = summary(values)
        batch_ops = result["ops"]["batch"]
        batch_ops["batch_size"] = args.batch
        batch_ops["per_instance_median_ms"] = round(batch_ops["median_ms"] / args.batch, 4)
        result["chosen"] = chosen
        results.append(result)
        line = " ".join(
            f"{k}={v['median_ms']:.3f}/{v['p90_ms']:.3f}" for k, v in result["ops"].items()
        )
        print(f"N={n:<6d} {variant:<13s} {line} (median/p90 ms)", flush=True)
        print(
            f"   batch of {args.batch}: {batch_ops['per_instance_median_ms']} ms per instance",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, action="append", help="host count (repeatable)")
    parser.add_argument("--variants", default="plain,az_image,anti_affinity")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batch-runs", type=int, default=5)
    parser.add_argument("--batch-warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--out", help="write JSON results here")
    args = parser.parse_args()
    results = []
    for n in args.hosts or [1000]:
        results += bench(n, args)
    if args.out:
        meta = {"python": platform.python_version(), "numpy": np.__version__, "argv": sys.argv}
        with open(args.out, "w") as handle:
            json.dump({"meta": meta, "results": results}, handle, indent=1)
        print(f"# wrote {args.out}")


if __name__ == "__main__":
    main()
