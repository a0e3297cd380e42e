"""Shared fixtures: an in-process app on a fresh SQLite file, and real server databases.

PostgreSQL and MariaDB tests use the services on 127.0.0.1 (see README). When one is not
reachable the test is skipped with the reason, except under ``CI=true``, where a missing
database is an error: CI must exercise them.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from allotment.app import Services, build_services, create_app
from allotment.config import Settings, load_settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SERVER_URLS = {
    "postgresql": os.environ.get(
        "ALLOTMENT_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("ALLOTMENT_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    overrides: dict[str, dict[str, Any]] = {
        "server": {"auth": "noauth", "state_dir": str(tmp_path / "state")},
        "database": {"url": f"sqlite:///{tmp_path / 'allotment.sqlite'}"},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_settings(None, overrides, environ={})


class PlacementClient:
    """A thin JSON client over TestClient with Placement's headers."""

    def __init__(self, client: TestClient, microversion: str = "latest", token: str = "admin"):
        self.client = client
        self.microversion = microversion
        self.token = token

    def headers(self, microversion: str | None = None, **extra: str) -> dict[str, str]:
        out = {
            "x-auth-token": self.token,
            "openstack-api-version": f"placement {microversion or self.microversion}",
            "accept": "application/json",
        }
        out.update(extra)
        return out

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        microversion: str | None = None,
        headers: dict[str, str] | None = None,
        params: Any = None,
    ) -> Any:
        hdrs = self.headers(microversion)
        if headers:
            hdrs.update(headers)
        kwargs: dict[str, Any] = {"headers": hdrs, "params": params}
        if body is not None:
            kwargs["json"] = body
        return self.client.request(method, path, **kwargs)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def create_provider(self, name: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"name": name or f"rp-{uuid.uuid4().hex[:8]}", **fields}
        resp = self.post("/resource_providers", body, microversion="1.39")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())


@pytest.fixture(autouse=True)
def _root_log_handlers() -> Iterator[None]:
    """A test running the CLI installs a log handler on its captured stderr: put the old
    ones back, or background threads of later tests write to a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings)
    yield built
    built.db.dispose()


@pytest.fixture
def client(services: Services) -> Iterator[PlacementClient]:
    with TestClient(create_app(services)) as test_client:
        yield PlacementClient(test_client)


def _reachable(url: str) -> str | None:
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure means "not usable here"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def fresh_server_database(kind: str) -> str:
    """A URL for a brand-new, empty database on the local PostgreSQL/MariaDB server."""
    base = sa.engine.make_url(SERVER_URLS[kind])
    problem = _reachable(base.render_as_string(hide_password=False))
    if problem:
        message = f"{kind} at {base.host}:{base.port} is not reachable ({problem})"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the {kind} tests")
        pytest.skip(message)
    name = f"allotment_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def drop_server_database(url: str) -> None:
    parsed = sa.engine.make_url(url)
    admin = parsed.set(database="test" if parsed.get_backend_name() != "sqlite" else None)
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if parsed.get_backend_name() == "postgresql":
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": parsed.database},
            )
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {parsed.database}"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each backend in turn: an SQLite file, then fresh PostgreSQL and MariaDB databases."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite'}"
        return
    url = fresh_server_database(request.param)
    try:
        yield url
    finally:
        drop_server_database(url)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``allotment serve`` as a real process on a real socket."""

    def __init__(
        self,
        database_url: str | None,
        state_dir: Path,
        *extra: str,
        auth: str = "noauth",
        port: int | None = None,
        wait: bool = True,
    ):
        import subprocess
        import sys

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = state_dir
        self.log_path = state_dir / f"server-{self.port}.log"
        state_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable, "-m", "allotment.cli", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--auth", auth, "--state-dir", str(state_dir), *extra,
        ]  # fmt: skip
        if database_url is not None:  # None: the database comes from a --config file
            args += ["--database-url", database_url]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 90.0) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                httpx.get(self.url + "/", timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except Exception:
                self.process.kill()
        self._log.close()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(f"sqlite:///{tmp_path / 'live.sqlite'}", tmp_path / "state")
    yield server
    server.stop()
