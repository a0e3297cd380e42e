"""Scale-out: ``allotment serve`` processes on one PostgreSQL / MariaDB database.

    .venv/bin/python benchmarks/scale_out.py --backend postgresql --hosts 10000 \\
        --calls 800 --reports 1000 --out /tmp/scale_out.json

Per backend, on a fresh database (``--database-prefix``, default ``hb_scale_``) seeded with
``select_destinations.py``'s cloud (in bulk, one transaction):

  first call     each process's first decision, alone and timed (``first_call_s``)
  one process    --clients clients send 1-instance select_destinations calls to one
                 process (placements/s, latency percentiles)
  two processes  the same calls split between two processes (half the clients each)
  checked        no provider over capacity in any class (in SQL, after both phases), and
                 no NoValidHost at all (the cloud is far from full, so any is false)
  report delay   --reports host reports sent to process A (``PUT /scheduler/v1/hosts/{h}``,
                 each with a new ``disabled_reason``), --reporters at once; after each,
                 B's ``GET /scheduler/v1/hosts/{h}`` is polled until it shows the report
                 (p50, p99, max from before the PUT; resolution: one poll, ``poll_ms``;
                 the PUT's own median, ``put_ms``, is part of the delay)

Progress goes to stderr, the JSON summary to stdout (and --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from allotment.app import build_services
from allotment.config import load_settings
from select_destinations import SERVICE_DOWN_TIME, _seed, log, percentiles, spec_body

SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "mysql": "mysql+pymysql://root@127.0.0.1:3306/mysql",
}
HEADERS = {"x-auth-token": "admin"}


def fresh_database(backend: str, prefix: str) -> str:
    base = sa.engine.make_url(SERVERS[backend])
    name = f"{prefix}{uuidlib.uuid4().hex[:10]}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    parsed = sa.engine.make_url(url)
    admin = parsed.set(database=sa.engine.make_url(SERVERS[parsed.get_backend_name()]).database)
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {parsed.database}"))
    engine.dispose()


def seed(url: str, folder: Path, hosts: int) -> None:
    settings = load_settings(
        None,
        {
            "server": {"auth": "noauth", "state_dir": str(folder / "seed-state")},
            "database": {"url": url},
            "logging": {"level": "WARNING"},
        },
        environ={},
    )
    services = build_services(settings)
    try:
        _seed(services, hosts, random.Random(20240601))
        with services.db.write() as conn:  # live hosts beat now (down ones an hour ago)
            conn.execute(
                sa.text(
                    "UPDATE scheduler_hosts SET heartbeat = :now "
                    "WHERE heartbeat > (SELECT m FROM (SELECT MAX(heartbeat) AS m "
                    "FROM scheduler_hosts) latest) - 600"
                ),
                {"now": time.time()},
            )
    finally:
        services.db.dispose()


@contextmanager
def server(url: str, folder: Path, port: int) -> Iterator[str]:
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "ALLOTMENT_LOGGING__LEVEL": "WARNING",
        "ALLOTMENT_SCHEDULER__SERVICE_DOWN_TIME": SERVICE_DOWN_TIME,
    }
    cmd = [sys.executable, "-m", "allotment.cli", "serve", "--auth", "noauth"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--database-url", url]
    cmd += ["--state-dir", str(folder / "state")]
    with (folder / "server.log").open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                httpx.get(base + "/", timeout=2, trust_env=False)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((folder / "server.log").read_text()[-3000:]) from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(30)


def first_call(base: str) -> float:
    """A process's first decision, alone (it builds the host snapshot); its seconds."""
    body = {"instance_uuids": [str(uuidlib.uuid4())], "request_spec": spec_body("plain")}
    with httpx.Client(base_url=base, timeout=600, trust_env=False) as http:
        started = time.perf_counter()
        resp = http.post("/scheduler/v1/select_destinations", json=body, headers=HEADERS)
        assert resp.status_code == 200, resp.text
        return time.perf_counter() - started


def place(bases: list[str], clients: int, calls: int) -> dict[str, Any]:
    """``clients`` clients (spread over ``bases``) sending ``calls`` 1-instance calls."""
    firsts = [round(first_call(base), 3) for base in bases]
    seconds: list[float] = []
    refused: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    spec = spec_body("plain")

    def client(base: str, count: int) -> None:
        mine: list[float] = []
        with httpx.Client(base_url=base, timeout=120, trust_env=False) as http:

            def call() -> None:
                body = {"instance_uuids": [str(uuidlib.uuid4())], "request_spec": spec}
                started = time.perf_counter()
                resp = http.post("/scheduler/v1/select_destinations", json=body, headers=HEADERS)
                mine.append(time.perf_counter() - started)
                if resp.status_code != 200:
                    with lock:
                        refused.append(f"{resp.status_code}: {resp.text[:300]}")

            try:
                call()  # connected before the clock starts
            except httpx.HTTPError:
                start.abort()  # the run fails rather than waits forever
                raise
            mine.clear()
            start.wait()
            for _ in range(count):
                call()
        with lock:
            seconds.extend(mine)

    threads = [
        threading.Thread(target=client, args=(bases[i % len(bases)], calls // clients))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        **percentiles(seconds),
        "placements_per_s": round((len(seconds) - len(refused)) / wall, 1),
        "clients": clients,
        "processes": len(bases),
        "refused": len(refused),
        "refusals": refused[:3],
        "first_call_s": firsts,
    }


def over_committed(url: str) -> int:
    """Providers over capacity in some class, counted in SQL."""
    engine = sa.create_engine(url)
    query = sa.text(
        "SELECT COUNT(*) FROM inventories i JOIN (SELECT resource_provider_id, "
        "resource_class_id, SUM(used) AS used FROM allocations GROUP BY resource_provider_id, "
        "resource_class_id) a ON a.resource_provider_id = i.resource_provider_id AND "
        "a.resource_class_id = i.resource_class_id "
        "WHERE a.used > (i.total - i.reserved) * i.allocation_ratio"
    )
    with engine.connect() as conn:
        found = int(conn.execute(query).scalar_one())
    engine.dispose()
    return found


def report_delay(a: str, b: str, reports: int, threads: int) -> dict[str, Any]:
    """Host reports sent to ``a``; after each, ``b``'s view of that host is polled
    (``GET /scheduler/v1/hosts/{host}``) until it shows the report. ``threads`` reporters
    at once, on different hosts."""
    with httpx.Client(base_url=a, timeout=60, trust_env=False) as to_a:
        hosts = to_a.get("/scheduler/v1/hosts", headers=HEADERS).json()["hosts"]
    live = [h for h in hosts if h["up"]]
    seen: list[float] = []
    polls: list[float] = []
    puts: list[float] = []
    lost: list[str] = []
    lock = threading.Lock()

    def reporter(first: int) -> None:
        rng = random.Random(first)
        mine: list[float] = []
        my_polls: list[float] = []
        my_puts: list[float] = []
        with (
            httpx.Client(base_url=a, timeout=60, trust_env=False) as to_a,
            httpx.Client(base_url=b, timeout=60, trust_env=False) as to_b,
        ):
            for i in range(first, reports, threads):
                host = live[i % len(live)]
                marker = f"bench {i}"
                body = {
                    "compute_node_uuid": host["compute_node_uuid"],
                    "hypervisor_type": "QEMU",
                    "supported_instances": [["x86_64", "kvm", "hvm"]],
                    "disabled": False,
                    "disabled_reason": marker,
                }
                sent = time.perf_counter()
                resp = to_a.put(f"/scheduler/v1/hosts/{host['host']}", json=body, headers=HEADERS)
                assert resp.status_code == 200, resp.text
                my_puts.append(time.perf_counter() - sent)
                while True:
                    started = time.perf_counter()
                    shown = to_b.get(f"/scheduler/v1/hosts/{host['host']}", headers=HEADERS)
                    now = time.perf_counter()
                    my_polls.append(now - started)
                    if any(n["disabled_reason"] == marker for n in shown.json()["nodes"]):
                        mine.append(now - sent)
                        break
                    if now - sent > 60:
                        with lock:
                            lost.append(marker)
                        break
                time.sleep(rng.uniform(0, 0.02))
        with lock:
            seen.extend(mine)
            polls.extend(my_polls)
            puts.extend(my_puts)

    workers = [threading.Thread(target=reporter, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ordered = sorted(seen)
    return {
        "reports": reports,
        "seen": len(seen),
        "not_seen_in_60_s": len(lost),
        "reporters": threads,
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "poll_ms": round(statistics.median(polls) * 1000, 1),
        "put_ms": round(statistics.median(puts) * 1000, 1),
    }


def run(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    url = fresh_database(backend, args.database_prefix)
    folder = Path(args.work) / backend
    try:
        log(f"{backend}: seeding {args.hosts} hosts")
        started = time.perf_counter()
        seed(url, folder, args.hosts)
        out: dict[str, Any] = {"seed_s": round(time.perf_counter() - started, 1)}
        out["load_before"] = os.getloadavg()
        with server(url, folder / "a", args.port) as a:
            log(f"{backend}: one process")
            out["one_process"] = place([a], args.clients, args.calls)
            log(f"{backend}: one process {out['one_process']}")
            with server(url, folder / "b", args.port + 1) as b:
                time.sleep(2 * args.sync_delay)
                log(f"{backend}: two processes")
                out["two_processes"] = place([a, b], args.clients, args.calls)
                log(f"{backend}: two processes {out['two_processes']}")
                out["over_committed_providers"] = over_committed(url)
                if args.reports:
                    log(f"{backend}: {args.reports} reports to a, seen by b")
                    out["report_delay"] = report_delay(a, b, args.reports, args.reporters)
                    log(f"{backend}: report delay {out['report_delay']}")
        out["load_after"] = os.getloadavg()
        one, two = out["one_process"], out["two_processes"]
        out["two_over_one"] = round(two["placements_per_s"] / one["placements_per_s"], 3)
        return out
    finally:
        drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", action="append", choices=sorted(SERVERS))
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=800, help="1-instance calls per phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--reporters", type=int, default=8, help="reports in flight at once")
    parser.add_argument("--sync-delay", type=float, default=1.0, help="host_state_sync_delay")
    parser.add_argument("--port", type=int, default=19240)
    parser.add_argument("--work", default="/tmp/allotment-scale-out")
    parser.add_argument("--database-prefix", default="hb_scale_", help="of the fresh database")
    parser.add_argument("--out", help="write the JSON summary here too")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "meta": {
            "python": platform.python_version(),
            "argv": sys.argv,
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
        }
    }
    for backend in args.backend or ["postgresql"]:
        result[backend] = run(backend, args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
