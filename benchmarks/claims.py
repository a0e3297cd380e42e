"""Claim throughput and server CPU per claim: PUT /allocations/{consumer} on one provider
with three classes, as placement_bench.py's claim phase does, without needing allocation
candidates.

    allotment serve --auth noauth --port 18990 --database-url sqlite:////tmp/b/db.sqlite &
    python benchmarks/claims.py --url http://127.0.0.1:18990 --server-pid $! --claims 2000

Phase 1: sequential claims round-robin over providers. Phase 2: --threads threads fill
--concurrent-providers fresh providers until every one is full, then usage is checked
against the 204s. Prints a JSON summary (server CPU only with --server-pid, same host).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from collections import Counter
from typing import Any

import requests

INVENTORY = {
    "VCPU": {"total": 64, "allocation_ratio": 4.0, "max_unit": 64},
    "MEMORY_MB": {"total": 262144, "reserved": 4096, "max_unit": 262144},
    "DISK_GB": {"total": 2000, "max_unit": 2000},
}
CLAIM = {"VCPU": 2, "MEMORY_MB": 4096, "DISK_GB": 20}
PER_PROVIDER = 63  # MEMORY_MB runs out first: (262144 - 4096) // 4096


class Placement:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.local = threading.local()
        self.project = str(uuid.uuid4())

    def session(self) -> requests.Session:
        found = getattr(self.local, "session", None)
        if found is None:
            found = self.local.session = requests.Session()
            found.trust_env = False
            found.headers.update(
                {"x-auth-token": "admin", "openstack-api-version": "placement 1.39"}
            )
        return found

    def provider(self) -> str:
        rp = str(uuid.uuid4())
        resp = self.session().post(f"{self.url}/resource_providers", json={"name": rp, "uuid": rp})
        resp.raise_for_status()
        body = {"resource_provider_generation": 0, "inventories": INVENTORY}
        self.session().put(f"{self.url}/resource_providers/{rp}/inventories", json=body)
        return rp

    def claim(self, rp: str) -> int:
        body = {
            "allocations": {rp: {"resources": CLAIM}},
            "consumer_generation": None,
            "project_id": self.project,
            "user_id": self.project,
            "consumer_type": "INSTANCE",
        }
        resp = self.session().put(f"{self.url}/allocations/{uuid.uuid4()}", json=body)
        return resp.status_code


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sequential(api: Placement, claims: int, pid: int | None) -> dict[str, Any]:
    providers = [api.provider() for _ in range(claims // PER_PROVIDER + 1)]
    statuses: Counter[int] = Counter()
    cpu, start = cpu_seconds(pid), time.perf_counter()
    for i in range(claims):
        statuses[api.claim(providers[i % len(providers)])] += 1
    seconds = time.perf_counter() - start
    return {
        "claims": claims,
        "statuses": dict(statuses),
        "claims_per_s": round(statuses[204] / seconds, 1),
        "server_cpu_ms_per_claim": round((cpu_seconds(pid) - cpu) * 1000 / claims, 3)
        if pid
        else None,
    }


def concurrent(api: Placement, threads: int, count: int, pid: int | None) -> dict[str, Any]:
    providers = [api.provider() for _ in range(count)]
    lock = threading.Lock()
    full: set[str] = set()
    statuses: Counter[int] = Counter()

    def worker(index: int) -> None:
        while True:
            with lock:
                open_rps = [rp for rp in providers if rp not in full]
            if not open_rps:
                return
            rp = open_rps[index % len(open_rps)]
            index += 1
            status = api.claim(rp)
            with lock:
                statuses[status] += 1
                if status == 409:
                    full.add(rp)

    cpu, start = cpu_seconds(pid), time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    seconds = time.perf_counter() - start
    attempts = sum(statuses.values())
    used = 0
    for rp in providers:
        resp = api.session().get(f"{api.url}/resource_providers/{rp}/usages")
        used += resp.json()["usages"]["VCPU"]
    return {
        "threads": threads,
        "providers": count,
        "statuses": dict(statuses),
        "claims_per_s": round(statuses[204] / seconds, 1),
        "server_cpu_ms_per_attempt": round((cpu_seconds(pid) - cpu) * 1000 / attempts, 3)
        if pid
        else None,
        "usage_matches_204s": used == statuses[204] * CLAIM["VCPU"],
        "all_full_at_capacity": statuses[204] == count * PER_PROVIDER,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:18990")
    parser.add_argument("--server-pid", type=int)
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--concurrent-providers", type=int, default=4)
    parser.add_argument("--out")
    args = parser.parse_args()
    api = Placement(args.url)
    summary = {
        "benchmark": "claims",
        "loadavg": os.getloadavg(),
        "sequential": sequential(api, args.claims, args.server_pid),
        "concurrent": concurrent(api, args.threads, args.concurrent_providers, args.server_pid),
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    main()
