"""The database goes away under a running ``allotment serve`` (PostgreSQL refuses new
connections and drops the open ones): every route, the token lookup included, answers a
JSON 503 ``allotment.database_unavailable``; ``GET /`` says the database is down; the
process stays up and recovers by itself when the database comes back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import (
    SERVER_URLS,
    LiveServer,
    drop_server_database,
    fresh_server_database,
)

pytestmark = pytest.mark.integration


def _admin() -> sa.Engine:
    return sa.create_engine(SERVER_URLS["postgresql"], isolation_level="AUTOCOMMIT")


def _set_reachable(name: str, reachable: bool) -> None:
    engine = _admin()
    with engine.connect() as conn:
        conn.execute(sa.text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {str(reachable).lower()}"))
        if not reachable:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
    engine.dispose()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    url = fresh_server_database("postgresql")
    try:
        yield url
    finally:
        _set_reachable(sa.engine.make_url(url).database or "", True)
        drop_server_database(url)


def _unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["errors"][0]
    assert error["code"] == "allotment.database_unavailable"
    assert "database is unavailable" in error["detail"]


def test_database_down_is_503_everywhere_and_recovers(database: str, tmp_path: Path) -> None:
    name = sa.engine.make_url(database).database or ""
    server = LiveServer(database, tmp_path / "state", auth="token")
    try:
        token = (tmp_path / "state" / "admin-token").read_text().strip()
        headers = {"x-auth-token": token, "openstack-api-version": "placement latest"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=15) as client:
            assert client.get("/resource_providers").status_code == 200
            assert "down" not in client.get("/").json()
            _set_reachable(name, False)
            # A token never seen before: its lookup needs the database.
            for _ in range(3):
                fresh = {"x-auth-token": uuid.uuid4().hex}
                _unavailable(client.get("/resource_providers", headers=fresh))
                _unavailable(client.get("/resource_providers"))
                _unavailable(client.post("/resource_providers", json={"name": "x"}))
                # The host cache answers reads from memory; a host report writes SQL.
                assert client.get("/scheduler/v1/hosts").status_code == 200
                _unavailable(
                    client.put(
                        "/scheduler/v1/hosts/h1", json={"compute_node_uuid": str(uuid.uuid4())}
                    )
                )
            root = client.get("/")
            assert root.status_code == 200
            assert "database" in root.json()["down"]
            assert server.process.poll() is None
            _set_reachable(name, True)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if client.get("/resource_providers").status_code == 200:
                    break
                time.sleep(0.2)
            assert client.get("/resource_providers").status_code == 200
            assert client.post("/resource_providers", json={"name": "back"}).status_code == 200
            while time.monotonic() < deadline and "down" in client.get("/").json():
                time.sleep(0.2)
            assert "down" not in client.get("/").json()
    finally:
        server.stop()
