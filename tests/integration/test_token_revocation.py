"""Revoking one of allotment's own tokens: refused on the next request in the revoking
process, and within ``CACHE_SECONDS`` (under 1 s) by a server in another process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from allotment.auth.tokens import CACHE_SECONDS, TokenAuth, TokenStore
from allotment.db import migrate
from allotment.db.database import Database
from tests.conftest import LiveServer


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TokenStore]:
    db = Database(f"sqlite:///{tmp_path / 'tokens.sqlite'}")
    migrate.prepare(db)
    yield TokenStore(db)
    db.dispose()


def test_revocation_is_immediate_in_the_revoking_process(store: TokenStore) -> None:
    auth = TokenAuth(store)
    token = store.create("svc", ["service"], project_id="services")
    ctx = auth.authenticate({"x-auth-token": token}, "req-1")
    assert ctx is not None and ctx.roles == {"service"} and ctx.project_id == "services"
    assert store.revoke("svc") == 1
    assert auth.authenticate({"x-auth-token": token}, "req-2") is None


def test_revocation_reaches_another_process_within_a_second(
    tmp_path: Path, store: TokenStore
) -> None:
    assert CACHE_SECONDS < 1.0
    token = store.create("svc", ["service"], project_id="services")
    server = LiveServer(store.db.url, tmp_path / "state", auth="token")
    try:
        headers = {"x-auth-token": token, "openstack-api-version": "placement latest"}
        url = server.url + "/resource_providers"
        # Warm the server's cache: the token is known and valid there.
        for _ in range(3):
            assert httpx.get(url, headers=headers).status_code == 200
        assert store.revoke("svc") == 1
        revoked_at = time.monotonic()
        while httpx.get(url, headers=headers).status_code == 200:
            assert time.monotonic() - revoked_at < 1.0, "revoked token still accepted after 1 s"
            time.sleep(0.02)
        assert httpx.get(url, headers=headers).status_code == 401
    finally:
        server.stop()
