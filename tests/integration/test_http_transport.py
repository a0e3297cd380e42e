"""The client transport against real sockets: token and microversion headers, retries with
backoff when the service is down, ServiceUnavailable when it stays down."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from allotment import errors
from allotment.client import HttpTransport
from allotment.client.placement_http import HttpPlacementClient
from allotment.context import RequestContext
from allotment.scheduler.placement import AllocationRequest, Claim
from tests.conftest import LiveServer, free_port


def test_talks_to_a_live_server(live_server: LiveServer) -> None:
    transport = HttpTransport(live_server.url, token="admin", microversion="1.39", retries=0)
    response = transport.request("GET", "/resource_providers")
    assert response.status_code == 200
    assert response.headers["openstack-api-version"] == "placement 1.39"
    response = transport.request("GET", "/resource_providers", microversion="1.14")
    assert response.headers["openstack-api-version"] == "placement 1.14"
    transport.close()


def test_no_token_means_401_not_a_retry(live_server: LiveServer) -> None:
    transport = HttpTransport(live_server.url, retries=3, backoff=5.0)
    started = time.monotonic()
    assert transport.request("GET", "/resource_providers").status_code == 401
    assert time.monotonic() - started < 2.0  # a 4xx is the caller's business, never retried


def test_unreachable_service_raises_after_retries() -> None:
    port = free_port()  # nothing listens here
    transport = HttpTransport(f"http://127.0.0.1:{port}", retries=2, backoff=0.01, timeout=1.0)
    with pytest.raises(errors.ServiceUnavailable) as caught:
        transport.request("GET", "/resource_providers")
    assert f"127.0.0.1:{port}" in caught.value.message
    assert "3 attempts" in caught.value.message


def test_retries_until_the_service_comes_up(tmp_path: Path) -> None:
    port = free_port()
    started: list[LiveServer] = []

    def start_late() -> None:
        time.sleep(0.5)
        url = f"sqlite:///{tmp_path / 'late.sqlite'}"
        started.append(LiveServer(url, tmp_path / "state", port=port, wait=False))

    thread = threading.Thread(target=start_late)
    thread.start()
    transport = HttpTransport(f"http://127.0.0.1:{port}", token="admin", retries=12, backoff=0.2)
    try:
        assert transport.request("GET", "/resource_providers").status_code == 200
    finally:
        thread.join()
        started[0].stop()


class _DropsFirstClaimAnswer(httpx.HTTPTransport):
    """Sends every request to the server, but loses the answer to the first
    ``POST /allocations`` after the server has handled it (a connection reset)."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path == "/allocations" and not self.dropped:
            response.read()
            self.dropped += 1
            raise httpx.RemoteProtocolError("server disconnected without a response")
        return response


def test_a_claim_whose_answer_is_lost_is_not_sent_again(live_server: LiveServer) -> None:
    wire = _DropsFirstClaimAnswer()
    transport = HttpTransport(
        live_server.url, token="admin", microversion="1.39", retries=3, backoff=0.01, transport=wire
    )
    rp = str(uuid.uuid4())
    assert transport.request(
        "POST", "/resource_providers", json={"name": "cn", "uuid": rp}
    ).is_success
    inventories = {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4}}}
    assert transport.request(
        "PUT", f"/resource_providers/{rp}/inventories", json=inventories
    ).is_success
    consumer = str(uuid.uuid4())
    claim = Claim(consumer, AllocationRequest({rp: {"VCPU": 1}}, {}), "p1", "u1")
    # Sent again, the committed claim would come back as a consumer-generation 409
    # ("already scheduled"); the client must say it does not know instead.
    with pytest.raises(errors.ServiceUnavailable, match="may or may not have taken effect"):
        HttpPlacementClient(transport).claim(RequestContext.internal(), [claim])
    assert wire.dropped == 1
    held = transport.request("GET", f"/allocations/{consumer}").json()["allocations"]
    assert {p: a["resources"] for p, a in held.items()} == {rp: {"VCPU": 1}}
    transport.close()


class RotatingCredentials:
    """Hands out ``tokens`` in turn, moving on when the service refuses one (what a
    keystoneauth session does when its token is revoked or expires under it)."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.invalidated = 0

    def token(self) -> str:
        return self.tokens[0]

    def invalidate(self) -> None:
        self.invalidated += 1
        self.tokens.pop(0)


def test_a_refused_token_is_renewed_once_and_the_request_sent_again(tmp_path: Path) -> None:
    from allotment.auth.tokens import TokenStore
    from allotment.db import migrate
    from allotment.db.database import Database

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    db = Database(url)
    migrate.prepare(db)
    store = TokenStore(db)
    good = store.create("svc", ["service"], project_id="services")
    server = LiveServer(url, tmp_path / "state", auth="token")
    try:
        credentials = RotatingCredentials("revoked-or-expired", good)
        transport = HttpTransport(server.url, credentials=credentials, retries=0)
        body = {"name": "made-after-reauth"}
        response = transport.request("POST", "/resource_providers", json=body, microversion="1.20")
        assert response.status_code == 200, response.text
        assert credentials.invalidated == 1
        # Only once: a second refusal is the caller's answer, not a loop.
        transport = HttpTransport(server.url, credentials=RotatingCredentials("a", "b"))
        assert transport.request("GET", "/resource_providers").status_code == 401
        transport.close()
    finally:
        server.stop()
        db.dispose()
