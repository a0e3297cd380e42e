"""``allotment agent`` through its entry point, against a live ``allotment serve``, on a
fake machine (a ``/proc`` and ``/sys`` tree under ``--root``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from allotment.agent.machine import cpu_flag_traits, parse_cpulist
from tests.conftest import LiveServer, free_port

HEADERS = {"x-auth-token": "admin", "openstack-api-version": "placement 1.39"}
CPUINFO_CPU = """processor\t: {n}
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx avx2 sha_ni pclmulqdq aes vmx fma

"""


def fake_machine(root: Path, cpus: int = 4, memory_kb: int = 8 * 1024 * 1024) -> Path:
    (root / "proc").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text("".join(CPUINFO_CPU.format(n=n) for n in range(cpus)))
    (root / "proc/meminfo").write_text(f"MemTotal:       {memory_kb} kB\nMemFree:        1000 kB\n")
    half = cpus // 2
    for node, cells in enumerate([range(half), range(half, cpus)]):
        base = root / f"sys/devices/system/node/node{node}"
        base.mkdir(parents=True)
        base.joinpath("cpulist").write_text(f"{cells.start}-{cells.stop - 1}\n")
        base.joinpath("meminfo").write_text(
            f"Node {node} MemTotal:       {memory_kb // 2} kB\nNode {node} MemFree: 5 kB\n"
        )
    for cpu in range(cpus):
        topology = root / f"sys/devices/system/cpu/cpu{cpu}/topology"
        topology.mkdir(parents=True)
        pair = cpu - cpu % 2
        topology.joinpath("thread_siblings_list").write_text(f"{pair},{pair + 1}\n")
    (root / "var/lib").mkdir(parents=True)
    return root


def agent(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "allotment.cli", "agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(f"sqlite:///{tmp_path / 'agent.sqlite'}", tmp_path / "state")
    yield live
    live.stop()


def test_cpu_flags_map_to_os_traits_names() -> None:
    flags = ["sse4_2", "avx2", "sha_ni", "pclmulqdq", "fma", "avx512_vnni", "fpu", "nonsense"]
    flags += ["aes", "pni", "amx_bf16"]
    assert cpu_flag_traits(flags) == {
        "HW_CPU_X86_AESNI",
        "HW_CPU_X86_SSE3",
        "HW_CPU_X86_AMXBF16",
        "HW_CPU_X86_SSE42",
        "HW_CPU_X86_AVX2",
        "HW_CPU_X86_SHA",
        "HW_CPU_X86_CLMUL",
        "HW_CPU_X86_FMA3",
        "HW_CPU_X86_AVX512VNNI",
    }
    assert cpu_flag_traits(["avx2"], arch="aarch64") == set()
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]


def test_show_prints_what_would_be_published(tmp_path: Path) -> None:
    root = fake_machine(tmp_path / "root")
    done = agent("show", "--root", str(root), "--host", "cn1", "--url", "http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    stat = os.statvfs(root / "var/lib")
    inventories = found["provider"]["inventories"]
    assert inventories["VCPU"] == {
        "total": 4,
        "reserved": 0,
        "max_unit": 4,
        "allocation_ratio": 4.0,
    }
    assert inventories["MEMORY_MB"]["total"] == 8192
    assert inventories["MEMORY_MB"]["reserved"] == 512
    assert inventories["DISK_GB"]["total"] == stat.f_blocks * stat.f_frsize // 1024**3
    assert "HW_CPU_X86_SHA" in found["provider"]["traits"]
    assert "HW_CPU_X86_SSE42" in found["provider"]["traits"]
    assert found["provider"]["uuid"] == found["report"]["compute_node_uuid"]
    cells = found["report"]["numa_topology"]["cells"]
    assert [(c["id"], c["cpus"], c["memory_mb"]) for c in cells] == [
        (0, [0, 1], 4096),
        (1, [2, 3], 4096),
    ]
    assert cells[0]["siblings"] == [[0, 1]]
    assert found["report"]["cpu_info"]["vendor"] == "GenuineIntel"


def test_a_missing_proc_file_is_a_clear_error(tmp_path: Path) -> None:
    done = agent("show", "--root", str(tmp_path), "--url", "http://127.0.0.1:9")
    assert done.returncode == 1
    assert "cannot read" in done.stderr and "proc/cpuinfo" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_interval_beyond_service_down_time_is_refused(tmp_path: Path) -> None:
    done = agent("--interval", "90", "--root", str(tmp_path), "--url", "http://127.0.0.1:9")
    assert done.returncode == 1 and "service_down_time" in done.stderr


def test_once_publishes_and_the_host_can_be_scheduled(server: LiveServer, tmp_path: Path) -> None:
    root = fake_machine(tmp_path / "root")
    token = tmp_path / "token"
    token.write_text("admin\n")
    base = ["--url", server.url, "--token-file", str(token), "--root", str(root)]
    done = agent("--once", "--host", "cn1", *base)
    assert done.returncode == 0, done.stderr
    http = httpx.Client(base_url=server.url, headers=HEADERS)
    [host] = http.get("/scheduler/v1/hosts").json()["hosts"]
    assert host["host"] == "cn1" and host["up"]
    node = host["compute_node_uuid"]
    inventories = http.get(f"/resource_providers/{node}/inventories").json()["inventories"]
    assert inventories["VCPU"]["total"] == 4 and inventories["MEMORY_MB"]["total"] == 8192
    traits = http.get(f"/resource_providers/{node}/traits").json()["traits"]
    assert {"HW_CPU_X86_AVX2", "HW_CPU_X86_AESNI"} <= set(traits)
    spec = {
        "project_id": "p1",
        "user_id": "u1",
        "flavor": {
            "name": "m1.small",
            "vcpus": 2,
            "memory_mb": 2048,
            "root_gb": 0,
            "extra_specs": {"trait:HW_CPU_X86_AVX2": "required"},
        },
    }
    body = {"instance_uuids": [str(uuid.uuid4())], "request_spec": spec}
    resp = http.post("/scheduler/v1/select_destinations", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["selections"][0][0]["host"] == "cn1"
    # Publishing again changes nothing (the same provider, found by its uuid).
    assert agent("--once", "--host", "cn1", *base).returncode == 0
    assert len(http.get("/resource_providers").json()["resource_providers"]) == 1
    # Deregistering while an instance holds allocations: placement refuses the provider.
    done = agent("deregister", "--host", "cn1", *base)
    assert done.returncode == 1 and "allocations" in done.stderr.lower()
    http.delete(f"/allocations/{body['instance_uuids'][0]}")
    done = agent("deregister", "--host", "cn1", *base)
    assert done.returncode == 0, done.stderr
    assert http.get("/scheduler/v1/hosts").json()["hosts"] == []
    assert http.get(f"/resource_providers/{node}").status_code == 404


def test_the_agent_survives_a_server_restart_on_an_empty_database(tmp_path: Path) -> None:
    root = fake_machine(tmp_path / "root")
    port = free_port()
    first = LiveServer(f"sqlite:///{tmp_path / 'one.sqlite'}", tmp_path / "s1", port=port)
    args = [sys.executable, "-m", "allotment.cli", "agent", "--url", first.url, "--token"]
    args += ["admin", "--root", str(root), "--host", "cn1", "--interval", "0.3"]
    args += ["--max-backoff", "0.5"]
    log = (tmp_path / "agent.log").open("w")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True)
    second: LiveServer | None = None
    try:
        http = httpx.Client(base_url=first.url, headers=HEADERS)
        wait_for(lambda: http.get("/scheduler/v1/hosts").json()["hosts"] != [])
        first.stop()
        time.sleep(1.0)  # the agent fails a few heartbeats and backs off
        assert process.poll() is None
        second = LiveServer(f"sqlite:///{tmp_path / 'two.sqlite'}", tmp_path / "s2", port=port)
        hosts = wait_for(lambda: http.get("/scheduler/v1/hosts").json()["hosts"])
        assert hosts[0]["host"] == "cn1" and hosts[0]["up"]
        # The empty database got the provider and its inventory back.
        inventories = http.get(
            f"/resource_providers/{hosts[0]['compute_node_uuid']}/inventories"
        ).json()["inventories"]
        assert inventories["VCPU"]["total"] == 4
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
        if second is not None:
            second.stop()
    text = (tmp_path / "agent.log").read_text()
    assert "trying again in" in text and "answers again" in text


def wait_for(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
            if found:
                return found
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)
