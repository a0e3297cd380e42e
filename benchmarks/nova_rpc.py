"""allotment as nova-scheduler, against the real nova-scheduler 34, on one fleet in one run.

    .venv/bin/python benchmarks/nova_rpc.py --hosts 1000 --calls 200 --nova-calls 6 \\
        --out /tmp/nova_rpc.json

The fleet (``--hosts`` compute nodes, one per host, in one cell):

- Nova's databases on MariaDB (``hb_api_*``, ``hb_cell0_*``, ``hb_cell1_*``), the schema
  made by Nova 34's own ``nova-manage`` (``drivers/novadb.py``); one host (service, compute
  node, host mapping) and one instance written by Nova's own objects, and the rest of the
  fleet copied from those rows **in bulk SQL** into the same tables (Nova's objects take
  minutes for 1,000 hosts and thousands of instances), each copy with its own uuid, host
  name and usage counters;
- allotment's placement (SQLite, served by the same ``allotment serve``): one provider per
  compute node with the node's uuid, VCPU / MEMORY_MB / DISK_GB inventory, and the
  allocations of the instances already there (0 to ``--max-existing`` m1.small per host,
  so hosts differ);
- ``allotment serve --nova-config nova.conf`` reads that Nova database (feeder) and serves
  Nova's scheduler RPC API on a RabbitMQ vhost of its own.

Phases, each a series of single-instance m1.small ``select_destinations`` calls with
``return_alternates`` (every call claims, and the claims stay: the fleet fills):

  allotment rpc   Nova's own SchedulerAPI over RabbitMQ (``drivers/scheduler_load.py``:
                  one process per caller, RequestSpec by ``RequestSpec.from_components``)
  allotment http  ``POST /scheduler/v1/select_destinations`` to the same server
  nova rpc        the real ``nova-scheduler`` 34 (``[scheduler] workers``, default 2;
                  started by ``tests/integration/nova/realsched.py``, logging at INFO) on
                  the same Nova database, its placement being allotment's (the same
                  providers and allocations), on another vhost; ``--nova-calls`` calls

each with 1 caller, then with ``--callers`` (8) at once. Reported per phase: placements/s
(calls over the wall time from the common start to the last answer), p50 / p90 / p99;
then the ratios allotment / Nova in placements/s and RPC p50 minus HTTP p50 (also without
the part of each RPC call spent in Nova's own serializer in the caller, timed by the
driver). Progress on stderr, the JSON summary on stdout (and ``--out``). Needs the Nova
venv the integration tests build (``tests/integration/nova/conftest.py``), MariaDB and RabbitMQ.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from select_destinations import log, percentiles
from serve import allotment_server

# The Nova venv, its driver scripts and the database URLs are the integration tests': the
# repository's root makes them importable.
sys.path.append(str(Path(__file__).resolve().parent.parent))
from tests.conftest import SERVER_URLS
from tests.integration.nova.conftest import DRIVERS, RABBIT, _rabbitmqctl, venv_path
from tests.integration.nova.realsched import nova_scheduler

PORT = 18400
HEADERS = {"x-auth-token": "admin", "openstack-api-version": "placement 1.39"}
SCHEDULER = "/scheduler/v1"
PROJECT, USER = "hb-project", "hb-user"
# m1.small, as Nova's flavor and as allotment's HTTP API takes it.
SMALL = {"vcpus": 1, "memory_mb": 2048, "root_gb": 20}
IMAGE = "9f3a2c1e-5b7d-4e6f-8a9b-0c1d2e3f4a5b"
# Every host: 16 cores at Nova's default cpu_allocation_ratio of 4, 64 GB, 1 TB.
HOST = {"vcpus": 16, "memory_mb": 65536, "local_gb": 1000, "cpu_allocation_ratio": 4.0}
# Traits a Nova 34 libvirt compute reports on its root provider; Nova 34's scheduler
# requires OWNER_NOVA (request filter ``owner_nova_filter``).
TRAITS = ["OWNER_NOVA", "COMPUTE_IMAGE_TYPE_QCOW2", "COMPUTE_IMAGE_TYPE_RAW",
          "COMPUTE_NET_VIF_MODEL_VIRTIO", "HW_CPU_X86_AVX2", "HW_CPU_X86_SSE42"]  # fmt: skip
# No compute reports a heartbeat here: both schedulers take every service as up.
SERVICE_DOWN_TIME = 86400


def nova_flavor() -> dict[str, Any]:
    return {
        "$obj": "Flavor",
        "id": 2,
        "name": "m1.small",
        "flavorid": "2",
        **SMALL,
        "ephemeral_gb": 0,
        "swap": 0,
        "rxtx_factor": 1.0,
        "vcpu_weight": 0,
        "is_public": True,
        "disabled": False,
        "extra_specs": {},
    }


def nova_image() -> dict[str, Any]:
    return {
        "$obj": "ImageMeta",
        "id": IMAGE,
        "name": "cirros",
        "disk_format": "qcow2",
        "container_format": "bare",
        "min_disk": 0,
        "min_ram": 0,
        "properties": {},
    }


def http_body() -> dict[str, Any]:
    return {
        "instance_uuids": [str(uuidlib.uuid4())],
        "request_spec": {
            "project_id": PROJECT,
            "user_id": USER,
            "flavor": {"name": "m1.small", **SMALL},
            "image": {"id": IMAGE, "disk_format": "qcow2"},
        },
        "return_alternates": True,
    }


# -- the Nova side: databases, the driver scripts, the real nova-scheduler ---------------


def nova_python() -> Path:
    python = venv_path() / "bin" / "python"
    if not python.exists():
        raise SystemExit(
            f"no Nova venv at {python.parent.parent}: run tests/integration/nova once "
            "(its fixture builds it)"
        )
    return python


def driver(script: str, payload: Any, timeout: float = 1800) -> Any:
    """One driver script in the Nova venv: JSON in, JSON out."""
    done = subprocess.run(
        [str(nova_python()), "-W", "ignore", str(DRIVERS / script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


@contextmanager
def nova_databases() -> Iterator[dict[str, str]]:
    """Fresh, empty MariaDB databases for the API database, cell0 and cell1."""
    base = sa.engine.make_url(SERVER_URLS["mysql"])
    tag = uuidlib.uuid4().hex[:8]
    names = {part: f"hb_{part}_{tag}" for part in ("api", "cell0", "cell1")}
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for name in names.values():
            conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    try:
        yield {
            part: base.set(drivername="mysql+pymysql", database=name).render_as_string(
                hide_password=False
            )
            + "?charset=utf8"
            for part, name in names.items()
        }
    finally:
        with engine.connect() as conn:
            for name in names.values():
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()


@contextmanager
def vhost(name: str) -> Iterator[str]:
    """A RabbitMQ vhost of this run's own; its transport URL."""
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"rabbit://guest:guest@{RABBIT}/{name}"
    finally:
        _rabbitmqctl("delete_vhost", name)


def _copy_rows(
    conn: sa.Connection, table: sa.Table, template: dict[str, Any], copies: list[dict[str, Any]]
) -> None:
    """Insert one row per ``copies`` entry: the template row with those columns changed
    (the primary key left to the database)."""
    base = {k: v for k, v in template.items() if k != "id"}
    conn.execute(sa.insert(table), [{**base, **changes} for changes in copies])


def _one(conn: sa.Connection, table: sa.Table, **where: Any) -> dict[str, Any]:
    query = sa.select(table).where(*(table.c[k] == v for k, v in where.items()))
    return dict(conn.execute(query).mappings().one())


def seed_nova(urls: dict[str, str], transport_url: str, hosts: list[dict[str, Any]]) -> str:
    """The schema by nova-manage, the first host and instance by Nova's objects, the rest
    copied in bulk SQL; answers cell1's uuid."""
    first = hosts[0]
    template_instance = str(uuidlib.uuid4())
    payload = {
        "api": urls["api"],
        "cell0": urls["cell0"],
        "cells": {"cell1": urls["cell1"]},
        "transport_url": transport_url,
        "steps": [
            {"do": "schema"},
            {
                "do": "host",
                "cell": "cell1",
                "host": first["host"],
                "nodes": [{"uuid": first["uuid"], "hypervisor_hostname": first["host"], **HOST}],
            },
            {
                "do": "instance",
                "cell": "cell1",
                "host": first["host"],
                "node": first["host"],
                "uuid": template_instance,
                "project_id": PROJECT,
                "user_id": USER,
            },
        ],
    }
    cells, *_ = driver("novadb.py", payload)
    cell_engine = sa.create_engine(urls["cell1"])
    api_engine = sa.create_engine(urls["api"])
    try:
        cell_meta = sa.MetaData()
        cell_meta.reflect(cell_engine)
        api_meta = sa.MetaData()
        api_meta.reflect(api_engine, only=["host_mappings"])
        with cell_engine.begin() as conn:
            _seed_cell(conn, cell_meta, hosts, template_instance)
        with api_engine.begin() as conn:
            mappings = api_meta.tables["host_mappings"]
            row = _one(conn, mappings, host=first["host"])
            _copy_rows(conn, mappings, row, [{"host": h["host"]} for h in hosts[1:]])
    finally:
        cell_engine.dispose()
        api_engine.dispose()
    return str(cells["cell1"])


def _seed_cell(
    conn: sa.Connection, meta: sa.MetaData, hosts: list[dict[str, Any]], template: str
) -> None:
    services, nodes = meta.tables["services"], meta.tables["compute_nodes"]
    instances = meta.tables["instances"]
    first = hosts[0]
    service = _one(conn, services, host=first["host"])
    _copy_rows(
        conn,
        services,
        service,
        [{"host": h["host"], "uuid": str(uuidlib.uuid4())} for h in hosts[1:]],
    )
    node = _one(conn, nodes, uuid=first["uuid"])
    copies = [
        {"uuid": h["uuid"], "host": h["host"], "hypervisor_hostname": h["host"]} for h in hosts[1:]
    ]
    _copy_rows(conn, nodes, node, copies)
    # Each node's usage counters as its compute would report them (Nova's weighers read them).
    for h in hosts:
        used = len(h["instances"])
        conn.execute(
            sa.update(nodes)
            .where(nodes.c.uuid == h["uuid"])
            .values(
                vcpus_used=used * SMALL["vcpus"],
                memory_mb_used=used * SMALL["memory_mb"],
                local_gb_used=used * SMALL["root_gb"],
                free_ram_mb=HOST["memory_mb"] - used * SMALL["memory_mb"],
                free_disk_gb=HOST["local_gb"] - used * SMALL["root_gb"],
                running_vms=used,
            )
        )
    compute_ids = dict(conn.execute(sa.select(nodes.c.host, nodes.c.id)).all())
    instance = _one(conn, instances, uuid=template)
    placed = [(h, u) for h in hosts for u in h["instances"]]
    _copy_rows(
        conn,
        instances,
        instance,
        [
            {
                "uuid": u,
                "host": h["host"],
                "node": h["host"],
                "compute_id": compute_ids[h["host"]],
                "hostname": f"vm-{u[:8]}",
                "display_name": f"vm-{u[:8]}",
            }
            for h, u in placed
        ],
    )
    # The rows Nova writes next to an instance (its extra, its info cache...), copied too.
    for table in meta.tables.values():
        if "instance_uuid" in table.c and table.name != "instances":
            rows = conn.execute(sa.select(table).where(table.c.instance_uuid == template))
            for row in rows.mappings().all():
                _copy_rows(conn, table, dict(row), [{"instance_uuid": u} for _, u in placed])
    # The template instance itself is not one of the fill's: it goes.
    for table in meta.tables.values():
        if "instance_uuid" in table.c and table.name != "instances":
            conn.execute(sa.delete(table).where(table.c.instance_uuid == template))
    conn.execute(sa.delete(instances).where(instances.c.uuid == template))


# -- allotment's placement and the calls --------------------------------------------------


def seed_placement(http: httpx.Client, hosts: list[dict[str, Any]]) -> None:
    """One provider per compute node (uuid = node uuid), its inventory, and the
    allocations of the instances already on it, as Nova's computes would write them."""
    inventory = {
        "VCPU": {"total": HOST["vcpus"], "allocation_ratio": HOST["cpu_allocation_ratio"]},
        "MEMORY_MB": {"total": HOST["memory_mb"]},
        "DISK_GB": {"total": HOST["local_gb"]},
    }
    for h in hosts:
        made = http.post("/resource_providers", json={"name": h["host"], "uuid": h["uuid"]})
        made.raise_for_status()
        body = {"resource_provider_generation": 0, "inventories": inventory}
        http.put(f"/resource_providers/{h['uuid']}/inventories", json=body).raise_for_status()
        body = {"resource_provider_generation": 1, "traits": TRAITS}
        http.put(f"/resource_providers/{h['uuid']}/traits", json=body).raise_for_status()
    resources = {
        "VCPU": SMALL["vcpus"],
        "MEMORY_MB": SMALL["memory_mb"],
        "DISK_GB": SMALL["root_gb"],
    }
    allocations = {
        instance: {
            "allocations": {h["uuid"]: {"resources": resources}},
            "project_id": PROJECT,
            "user_id": USER,
            "consumer_generation": None,
            "consumer_type": "INSTANCE",
        }
        for h in hosts
        for instance in h["instances"]
    }
    items = list(allocations.items())
    for start in range(0, len(items), 500):
        http.post("/allocations", json=dict(items[start : start + 500])).raise_for_status()


def wait_for_hosts(http: httpx.Client, count: int, timeout: float = 300) -> None:
    """Until allotment's host cache holds the fleet (read from Nova's database)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = http.get(f"{SCHEDULER}/hosts").json().get("hosts", [])
        if len(seen) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the host cache holds {len(seen)} of {count} hosts")
        time.sleep(1)


def rpc_phase(transport_url: str, callers: int, calls: int, timeout: int) -> dict[str, Any]:
    answer: dict[str, Any] = driver(
        "scheduler_load.py",
        {
            "transport_url": transport_url,
            "rpc_response_timeout": timeout,
            "callers": callers,
            "calls": calls,
            "warmup": 1,
            "flavor": nova_flavor(),
            "image": nova_image(),
            "return_alternates": True,
            "context": {"user_id": USER, "project_id": PROJECT, "roles": ["member", "reader"]},
        },
        timeout=3600,
    )
    return answer


def http_phase(url: str, callers: int, calls: int) -> dict[str, Any]:
    """The same calls over allotment's HTTP API, from ``callers`` threads (one client
    each), started together after one warm-up call each."""
    share = [calls // callers + (i < calls % callers) for i in range(callers)]
    barrier = threading.Barrier(callers + 1)
    made: list[dict[str, Any]] = []
    ends: list[float] = []
    lock = threading.Lock()

    def run(count: int) -> None:
        with httpx.Client(base_url=url, headers=HEADERS, timeout=120) as http:
            http.post(f"{SCHEDULER}/select_destinations", json=http_body())
            barrier.wait()
            for _ in range(count):
                body = http_body()
                begin = time.perf_counter()
                response = http.post(f"{SCHEDULER}/select_destinations", json=body)
                seconds = time.perf_counter() - begin
                ok = response.status_code == 200
                choices = response.json()["selections"][0] if ok else []
                with lock:
                    made.append(
                        {
                            "seconds": seconds,
                            "host": choices[0]["host"] if ok else None,
                            "alternates": len(choices) - 1 if ok else 0,
                            "error": None
                            if ok
                            else f"{response.status_code}: {response.text[:300]}",
                        }
                    )
        with lock:
            ends.append(time.monotonic())

    threads = [threading.Thread(target=run, args=(n,)) for n in share]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.monotonic()
    for thread in threads:
        thread.join()
    return {"calls": made, "wall": max(ends) - started}


def summary(phase: dict[str, Any]) -> dict[str, Any]:
    calls = phase["calls"]
    good = [c for c in calls if c["error"] is None]
    return {
        "calls": len(calls),
        "errors": len(calls) - len(good),
        "first_error": next((c["error"] for c in calls if c["error"]), None),
        "placements_per_s": round(len(good) / phase["wall"], 3),
        "wall_s": round(phase["wall"], 3),
        "distinct_hosts": len({c["host"] for c in good}),
        "alternates_min": min((c["alternates"] for c in good), default=0),
        **(percentiles([c["seconds"] for c in good]) if good else {}),
        **(_serializer(good) if good and "nova_serializer_seconds" in good[0] else {}),
    }


def _serializer(good: list[dict[str, Any]]) -> dict[str, float]:
    """The caller's own part of an RPC call: Nova's serializer (the RequestSpec to
    primitives, the Selections back), which any scheduler's caller pays; and the call's
    median without it."""
    serializer = [c["nova_serializer_seconds"] for c in good]
    rest = [c["seconds"] - c["nova_serializer_seconds"] for c in good]
    return {
        "nova_serializer_median_ms": round(statistics.median(serializer) * 1000, 3),
        "median_without_nova_serializer_ms": round(statistics.median(rest) * 1000, 3),
    }


def fleet(count: int, max_existing: int, rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "host": f"hb-compute-{i:05d}",
            "uuid": str(uuidlib.UUID(int=rng.getrandbits(128), version=4)),
            "instances": [
                str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
                for _ in range(rng.randint(0, max_existing))
            ],
        }
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--max-existing", type=int, default=16, help="instances per host, at most")
    parser.add_argument("--calls", type=int, default=200, help="per allotment phase")
    parser.add_argument("--nova-calls", type=int, default=6, help="per nova-scheduler phase")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--nova-workers", type=int, default=2)
    parser.add_argument("--no-nova", action="store_true", help="allotment's phases only")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the servers' logs and files")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    hosts = fleet(args.hosts, args.max_existing, rng)
    folder = Path(tempfile.mkdtemp(prefix="hb_nova_rpc_"))
    tag = uuidlib.uuid4().hex[:8]
    results: dict[str, Any] = {
        "hosts": args.hosts,
        "existing_instances": sum(len(h["instances"]) for h in hosts),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "load_average_start": os.getloadavg(),
    }
    try:
        with (
            nova_databases() as urls,
            vhost(f"hb-allot-{tag}") as allot_url,
            vhost(f"hb-nova-{tag}") as nova_url,
        ):
            started = time.monotonic()
            cell = seed_nova(urls, allot_url, hosts)
            results["seed_nova_s"] = round(time.monotonic() - started, 1)
            log(f"Nova's databases: {args.hosts} hosts in {results['seed_nova_s']} s")
            nova_conf = folder / "nova.conf"
            nova_conf.write_text(
                f"[DEFAULT]\ntransport_url = {allot_url}\nhost = hb-allotment\n"
                f"[api_database]\nconnection = {urls['api']}\n"
                f"[database]\nconnection = {urls['cell1']}\n"
            )
            settings = folder / "allotment.toml"
            settings.write_text(
                f'[nova]\ncell_uuid = "{cell}"\n'
                f"[scheduler]\nservice_down_time = {SERVICE_DOWN_TIME}\n"
            )
            serve_args = ("--config", str(settings), "--nova-config", str(nova_conf))
            with (
                allotment_server(
                    folder / "allotment.sqlite", folder, args.port, args=serve_args
                ) as (url, _),
                httpx.Client(base_url=url, headers=HEADERS, timeout=120) as http,
            ):
                started = time.monotonic()
                seed_placement(http, hosts)
                wait_for_hosts(http, args.hosts)
                results["seed_placement_s"] = round(time.monotonic() - started, 1)
                log(f"allotment's placement and host cache: {results['seed_placement_s']} s")
                phases: dict[str, Any] = {}
                for callers in (1, args.callers):
                    name = f"allotment_rpc_{callers}"
                    phases[name] = summary(rpc_phase(allot_url, callers, args.calls, 60))
                    log(f"{name}: {phases[name]}")
                    name = f"allotment_http_{callers}"
                    phases[name] = summary(http_phase(url, callers, args.calls))
                    log(f"{name}: {phases[name]}")
                if not args.no_nova:
                    options = {
                        # Nova logs at INFO, as deployed; nova.service at DEBUG only for
                        # the line realsched waits for.
                        "DEFAULT": {
                            "debug": False,
                            "default_log_levels": "nova.service=DEBUG",
                            "service_down_time": SERVICE_DOWN_TIME,
                        },
                        "scheduler": {"workers": args.nova_workers},
                    }
                    started = time.monotonic()
                    with nova_scheduler(
                        nova_python(),
                        folder / "nova-scheduler",
                        transport_url=nova_url,
                        api_database=urls["api"],
                        cell_database=urls["cell1"],
                        placement_url=url,
                        host="hb-nova-scheduler",
                        options=options,
                    ):
                        results["nova_start_s"] = round(time.monotonic() - started, 1)
                        log(f"nova-scheduler ready in {results['nova_start_s']} s")
                        for callers in (1, args.callers):
                            calls = max(args.nova_calls, callers)
                            name = f"nova_rpc_{callers}"
                            phases[name] = summary(rpc_phase(nova_url, callers, calls, 600))
                            log(f"{name}: {phases[name]}")
                results["phases"] = phases
    finally:
        results["load_average_end"] = os.getloadavg()
        if args.keep:
            log(f"logs and files kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    results["ratios"] = ratios(results["phases"], args.callers)
    print_table(results, args.callers)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def ratios(phases: dict[str, Any], callers: int) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for n in (1, callers):
        rpc, http = phases[f"allotment_rpc_{n}"], phases[f"allotment_http_{n}"]
        found[f"rpc_minus_http_p50_ms_{n}"] = round(rpc["median_ms"] - http["median_ms"], 3)
        if "median_without_nova_serializer_ms" in rpc:
            found[f"rpc_without_nova_serializer_minus_http_p50_ms_{n}"] = round(
                rpc["median_without_nova_serializer_ms"] - http["median_ms"], 3
            )
        nova = phases.get(f"nova_rpc_{n}")
        if nova and nova["placements_per_s"]:
            found[f"allotment_over_nova_placements_{n}"] = round(
                rpc["placements_per_s"] / nova["placements_per_s"], 1
            )
            found[f"nova_over_allotment_p50_{n}"] = round(nova["median_ms"] / rpc["median_ms"], 1)
    return found


def print_table(results: dict[str, Any], callers: int) -> None:
    rows = [
        "| phase | calls | placements/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in results["phases"].items():
        rows.append(
            f"| {name} | {p['calls']} | {p['placements_per_s']} | {p.get('median_ms')} "
            f"| {p.get('p99_ms')} | {p['errors']} |"
        )
    rows.append("")
    rows += [f"{key}: {value}" for key, value in results["ratios"].items()]
    print("\n".join(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
