"""Bounded work per request against a real ``allotment serve`` (``[limits]``): oversized
headers, tokens and bodies, slow headers and bodies, and the candidate cap, with the event
loop answering ``GET /`` quickly while the heaviest allowed candidates request runs."""

from __future__ import annotations

import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.integration

LIMITS = """
[limits]
max_header_bytes = 8192
max_body_bytes = 65536
max_token_bytes = 512
header_timeout = 1.0
request_timeout = 2.0
max_allocation_candidates = 2000
"""
HEADERS = {"x-auth-token": "admin", "openstack-api-version": "placement latest"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("limits")
    config = tmp / "allotment.toml"
    config.write_text(LIMITS)
    live = LiveServer(f"sqlite:///{tmp / 'db.sqlite'}", tmp / "state", "--config", str(config))
    yield live
    live.stop()


def _connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_oversized_headers_are_431_and_closed(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 20000 + b"\r\n\r\n")
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_long_token_is_refused_before_lookup(server: LiveServer) -> None:
    response = httpx.get(server.url + "/resource_providers", headers={"x-auth-token": "t" * 600})
    assert response.status_code == 401, response.text
    assert "X-Auth-Token is longer than 512 bytes" in response.json()["errors"][0]["detail"]


def test_declared_oversized_body_is_413_without_reading_it(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /resource_providers HTTP/1.1\r\nhost: x\r\nx-auth-token: admin\r\n"
            b"content-type: application/json\r\ncontent-length: 104857600\r\n\r\n" + b"[" * 1000
        )
        started = time.monotonic()
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"allotment.request_too_large" in answer
    assert time.monotonic() - started < 2


def test_chunked_oversized_body_is_413(server: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 4096

    response = httpx.post(
        server.url + "/resource_providers",
        content=chunks(),
        headers={**HEADERS, "content-type": "application/json"},
    )
    assert response.status_code == 413, response.text


def test_slow_body_is_408(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /resource_providers HTTP/1.1\r\nhost: x\r\nx-auth-token: admin\r\n"
            b"content-type: application/json\r\ncontent-length: 100\r\n\r\n{"
        )
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]


def test_half_sent_headers_are_closed(server: LiveServer) -> None:
    socks = [_connect(server) for _ in range(50)]
    try:
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ")
        started = time.monotonic()
        closed = 0
        for sock in socks:
            sock.settimeout(5)
            answer = _read_all(sock)
            closed += answer.startswith(b"HTTP/1.1 408")
        assert closed == len(socks)
        assert time.monotonic() - started < 5
        # The server still answers.
        assert httpx.get(server.url + "/", timeout=5).status_code == 200
    finally:
        for sock in socks:
            sock.close()


def _gpu_fleet(client: httpx.Client, hosts: int = 10, gpus: int = 8) -> None:
    for h in range(hosts):
        root = str(uuid.uuid4())
        client.post("/resource_providers", json={"name": f"cn{h}", "uuid": root})
        client.put(
            f"/resource_providers/{root}/inventories",
            json={"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 64}}},
        )
        for g in range(gpus):
            gpu = str(uuid.uuid4())
            response = client.post(
                "/resource_providers",
                json={"name": f"cn{h}-gpu{g}", "uuid": gpu, "parent_provider_uuid": root},
            )
            assert response.status_code == 200, response.text
            response = client.put(
                f"/resource_providers/{gpu}/inventories",
                json={"resource_provider_generation": 0, "inventories": {"VGPU": {"total": 4}}},
            )
            assert response.status_code == 200, response.text


HEAVY = {
    **{f"resources{i}": "VGPU:1" for i in range(1, 13)},
    "group_policy": "none",
}


@pytest.mark.slow
def test_heaviest_candidates_request_is_capped_and_does_not_block_the_loop(
    server: LiveServer,
) -> None:
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as client:
        _gpu_fleet(client)
        result: dict[str, object] = {}

        def heavy() -> None:
            started = time.monotonic()
            response = client.get("/allocation_candidates", params=HEAVY)
            result["status"] = response.status_code
            result["count"] = len(response.json().get("allocation_requests", []))
            result["seconds"] = time.monotonic() - started

        latencies = []
        thread = threading.Thread(target=heavy)
        thread.start()
        with httpx.Client(base_url=server.url, timeout=10) as probe:
            while thread.is_alive() or len(latencies) < 20:
                started = time.monotonic()
                assert probe.get("/").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.01)
        thread.join()
        assert result["status"] == 200, result
        assert 0 < int(str(result["count"])) <= 2000
        # p95, not the max: the machine is shared, one scheduling hiccup is not the loop
        # being blocked (which held every probe for the whole search before).
        p95 = sorted(latencies)[int(0.95 * len(latencies))]
        assert p95 < 0.1, (p95, max(latencies), statistics.median(latencies), result)
        over = client.get("/allocation_candidates", params={**HEAVY, "limit": "2001"})
        assert over.status_code == 400
        assert "cap of 2000" in over.json()["errors"][0]["detail"]
