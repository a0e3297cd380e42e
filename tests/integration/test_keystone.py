"""allotment behind a real Keystone (``[auth] strategy = keystone``), with real tokens.

Keystone comes from PyPI (``tests/integration/keystone.py``: cached venv, SQLite, fernet);
users, projects and role assignments are made with keystoneauth1, and every check uses a
token Keystone issued: a service user writes to placement and schedules; a project reader
sees its own project's usages only; a system reader may list providers (with a policy file
that says so) but not write; expired and revoked tokens are refused; osc-placement works
end to end with ``--os-auth-type password``. The scheduler's keystoneauth1 placement client
schedules across a token expiry against allotment and against the real OpenStack Placement
16, both behind this Keystone (the catalog names them in RegionOne and RegionTwo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from tests.conftest import LiveServer, free_port
from tests.fleet import Fleet, request_spec
from tests.integration import keystone as keystone_fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PASSWORD = "secret-for-tests"
MICROVERSION = {"openstack-api-version": "placement 1.39", "accept": "application/json"}
# Tokens live 40 s here, so keystoneauth logs in again before nearly every request (it
# renews tokens with under 120 s left), on both sides: requests take seconds on a busy box.
TIMEOUT = 60.0


@dataclass
class Identity:
    """Keystone as its admin sees it: ids of what the module made, and token helpers."""

    keystone: keystone_fixture.Keystone
    admin: ks_session.Session
    projects: dict[str, str]
    users: dict[str, str]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.admin.request(
            self.keystone.auth_url + path, method, json=body, raise_exc=True
        )
        return response.json() if response.content else None

    def auth(self, user: str, *, project: str | None = None, system: bool = False) -> v3.Password:
        scope: dict[str, Any] = (
            {"system_scope": "all"} if system else {"project_id": self.projects[project or ""]}
        )
        return v3.Password(
            auth_url=self.keystone.auth_url,
            username=user,
            password=PASSWORD,
            user_domain_id="default",
            **scope,
        )

    def token(self, user: str, **scope: Any) -> str:
        return str(ks_session.Session(auth=self.auth(user, **scope)).get_token())


class FreshToken(httpx.Auth):
    """A new token from Keystone on every request (the test's own calls)."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers["x-auth-token"] = self.identity.token("nova", project="service")
        yield request


def _make_identity(keystone: keystone_fixture.Keystone, placement_urls: dict[str, str]) -> Identity:
    """Users, projects and roles, and a placement endpoint per region (``placement_urls``)."""
    admin = ks_session.Session(
        auth=v3.Password(
            auth_url=keystone.auth_url,
            username="admin",
            password=keystone_fixture.ADMIN_PASSWORD,
            user_domain_id="default",
            system_scope="all",
        )
    )
    identity = Identity(keystone, admin, {}, {})
    roles = {r["name"]: r["id"] for r in identity.call("GET", "/roles")["roles"]}
    for project in ("service", "demo", "other"):
        body = {"project": {"name": project, "domain_id": "default"}}
        identity.projects[project] = identity.call("POST", "/projects", body)["project"]["id"]
    # (user, role, project or None for a system role assignment)
    grants = [
        ("placement", "service", "service"),
        ("nova", "service", "service"),
        ("demo-reader", "reader", "demo"),
        ("auditor", "reader", None),
    ]
    for user, role, project in grants:
        body = {"user": {"name": user, "password": PASSWORD, "domain_id": "default"}}
        user_id = identity.call("POST", "/users", body)["user"]["id"]
        identity.users[user] = user_id
        if project is None:
            identity.call("PUT", f"/system/users/{user_id}/roles/{roles[role]}")
        else:
            path = f"/projects/{identity.projects[project]}/users/{user_id}/roles/{roles[role]}"
            identity.call("PUT", path)
    service = identity.call("POST", "/services", {"service": {"type": "placement"}})
    for region, url in placement_urls.items():
        if region != "RegionOne":  # bootstrap made RegionOne
            identity.call("POST", "/regions", {"region": {"id": region}})
        for interface in ("public", "internal"):
            endpoint = {
                "service_id": service["service"]["id"],
                "interface": interface,
                "url": url,
                "region_id": region,
            }
            identity.call("POST", "/endpoints", {"endpoint": endpoint})
    return identity


@pytest.fixture(scope="module")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keystone_fixture.Keystone]:
    server = keystone_fixture.start(tmp_path_factory.mktemp("keystone"), free_port())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def placement_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def upstream_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def identity(
    keystone: keystone_fixture.Keystone, placement_port: int, upstream_port: int
) -> Identity:
    return _make_identity(
        keystone,
        {
            "RegionOne": f"http://127.0.0.1:{placement_port}",
            "RegionTwo": f"http://127.0.0.1:{upstream_port}",
        },
    )


@pytest.fixture(scope="module")
def upstream(
    tmp_path_factory: pytest.TempPathFactory, identity: Identity, upstream_port: int
) -> Iterator[keystone_fixture.Placement]:
    """The real OpenStack Placement 16 behind the same Keystone (its own service user)."""
    server = keystone_fixture.start_placement(
        tmp_path_factory.mktemp("upstream"),
        upstream_port,
        identity.keystone,
        username="placement",
        password=PASSWORD,
    )
    yield server
    server.stop()


def keystone_config(folder: Path, identity: Identity, extra: str = "") -> Path:
    config = folder / "allotment.toml"
    config.write_text(
        f"""{extra}
[keystone_authtoken]
www_authenticate_uri = "{identity.keystone.auth_url}"
auth_url = "{identity.keystone.auth_url}"
auth_type = "password"
username = "placement"
password = "{PASSWORD}"
project_name = "service"
user_domain_id = "default"
project_domain_id = "default"
# Every request is validated afresh, so a revocation is seen at once.
token_cache_time = -1
"""
    )
    return config


def serve_behind_keystone(
    folder: Path, identity: Identity, port: int | None = None, extra: str = ""
) -> LiveServer:
    folder.mkdir(parents=True, exist_ok=True)
    config = keystone_config(folder, identity, extra)
    server = LiveServer(
        f"sqlite:///{folder / 'allotment.sqlite'}",
        folder / "state",
        "--config",
        str(config),
        auth="keystone",
        port=port,
        wait=False,
    )
    # keystonemiddleware and keystoneauth1 make a slow import: ~30 s on a loaded 2-core box.
    server.wait_ready(timeout=120)
    return server


@pytest.fixture(scope="module")
def allotment(
    tmp_path_factory: pytest.TempPathFactory, identity: Identity, placement_port: int
) -> Iterator[LiveServer]:
    server = serve_behind_keystone(
        tmp_path_factory.mktemp("allotment"), identity, port=placement_port
    )
    yield server
    server.stop()


def get(server: LiveServer, path: str, token: str) -> httpx.Response:
    return httpx.get(
        server.url + path, headers={**MICROVERSION, "x-auth-token": token}, timeout=TIMEOUT
    )


def test_a_service_user_writes_placement_and_schedules(
    allotment: LiveServer, identity: Identity
) -> None:
    token = identity.token("nova", project="service")
    with httpx.Client(base_url=allotment.url, timeout=TIMEOUT) as http:
        fleet = Fleet(http, headers={**MICROVERSION, "x-auth-token": token})
        fleet.host("kvm-1")
        # Short-lived tokens (see TIMEOUT): a fresh one for the scheduling call.
        fleet.headers["x-auth-token"] = identity.token("nova", project="service")
        response = fleet.select(request_spec(project_id=identity.projects["demo"]))
    assert response.status_code == 200, response.text
    assert response.json()["selections"][0][0]["host"] == "kvm-1"


def test_a_project_reader_sees_only_its_own_project_usages(
    allotment: LiveServer, identity: Identity
) -> None:
    token = identity.token("demo-reader", project="demo")
    own = get(allotment, f"/usages?project_id={identity.projects['demo']}", token)
    assert own.status_code == 200, own.text
    other = get(allotment, f"/usages?project_id={identity.projects['other']}", token)
    assert other.status_code == 403
    assert get(allotment, "/resource_providers", token).status_code == 403


def test_a_system_reader_lists_providers_but_does_not_write(
    tmp_path: Path, identity: Identity
) -> None:
    # Placement 16's rules are project-scoped; this operator lets system readers read.
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        '"placement:resource_providers:list": '
        '"rule:admin_or_service_api or (role:reader and system_scope:all)"\n'
    )
    extra = f'[oslo_policy]\nenforce_scope = false\npolicy_file = "{policy_file}"\n'
    server = serve_behind_keystone(tmp_path / "sysread", identity, extra=extra)
    try:
        token = identity.token("auditor", system=True)
        assert get(server, "/resource_providers", token).status_code == 200
        created = httpx.post(
            server.url + "/resource_providers",
            json={"name": "nope"},
            headers={**MICROVERSION, "x-auth-token": token},
            timeout=TIMEOUT,
        )
        assert created.status_code == 403
        # The project-scoped default still refuses the same reader elsewhere.
        assert get(server, "/traits", token).status_code == 403
    finally:
        server.stop()


def test_revoked_and_expired_tokens_are_refused(allotment: LiveServer, identity: Identity) -> None:
    token = identity.token("nova", project="service")
    issued = time.monotonic()
    assert get(allotment, "/resource_providers", token).status_code == 200
    revoked = identity.token("nova", project="service")
    assert get(allotment, "/resource_providers", revoked).status_code == 200
    identity.admin.delete(
        identity.keystone.auth_url + "/auth/tokens", headers={"X-Subject-Token": revoked}
    )
    assert get(allotment, "/resource_providers", revoked).status_code == 401
    assert get(allotment, "/resource_providers", "not-a-token").status_code == 401
    time.sleep(max(0.0, keystone_fixture.TOKEN_EXPIRATION_S + 1 - (time.monotonic() - issued)))
    assert get(allotment, "/resource_providers", token).status_code == 401


def test_osc_placement_with_password_auth(allotment: LiveServer, identity: Identity) -> None:
    name = f"osc-{uuid.uuid4().hex[:8]}"
    openstack = Path(sys.executable).with_name("openstack")
    auth = [
        "--os-auth-type", "password",
        "--os-auth-url", identity.keystone.auth_url,
        "--os-username", "nova", "--os-password", PASSWORD,
        "--os-project-name", "service",
        "--os-user-domain-id", "default", "--os-project-domain-id", "default",
        "--os-interface", "public", "--os-region-name", "RegionOne",
        "--os-placement-api-version", "1.39",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}

    def osc(*args: str) -> Any:
        done = subprocess.run(
            [str(openstack), *auth, *args, "-f", "json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    created = osc("resource", "provider", "create", name)
    assert created["name"] == name
    listed = osc("resource", "provider", "list", "--name", name)
    assert [p["uuid"] for p in listed] == [created["uuid"]]


# Two scheduler starts, a real Placement and a token lifetime's wait: minutes on a busy box.
@pytest.mark.timeout(900)
def test_the_scheduler_uses_a_placement_behind_keystone_across_token_expiry(
    tmp_path: Path,
    allotment: LiveServer,
    upstream: keystone_fixture.Placement,
    identity: Identity,
) -> None:
    """Two schedulers use keystoneauth1 (password plugin, placement found in the catalog by
    region): one against the first allotment (RegionOne), one against the real OpenStack
    Placement 16 (RegionTwo). Hosts are published with ReportClient; both schedule before
    and after their tokens have expired (one wait serves both)."""
    placements = {"RegionOne": allotment.url, "RegionTwo": upstream.url}
    schedulers: dict[str, LiveServer] = {}
    try:
        for region in placements:
            extra = f"""[placement_client]
auth_type = "password"
auth_url = "{identity.keystone.auth_url}"
username = "nova"
password = "{PASSWORD}"
project_name = "service"
user_domain_id = "default"
project_domain_id = "default"
valid_interfaces = ["public"]
region_name = "{region}"
"""
            schedulers[region] = serve_behind_keystone(tmp_path / region, identity, extra=extra)
        with ExitStack() as stack:
            fleets: dict[str, Fleet] = {}
            hosts: dict[str, Any] = {}
            for region, url in placements.items():
                # Each request logs in afresh: on a loaded box a few requests can outlast
                # a 40 s token, and the expiry under test is the schedulers' own.
                fresh = FreshToken(identity)
                to_scheduler = httpx.Client(
                    base_url=schedulers[region].url, timeout=TIMEOUT, auth=fresh
                )
                to_placement = httpx.Client(base_url=url, timeout=TIMEOUT, auth=fresh)
                stack.enter_context(to_scheduler)
                stack.enter_context(to_placement)
                token = identity.token("nova", project="service")
                fleets[region] = Fleet(
                    to_scheduler,
                    placement=to_placement,
                    headers={**MICROVERSION, "x-auth-token": token},
                )
                hosts[region] = fleets[region].host(f"remote-kvm-{region.lower()}")
            for round_ in ("first", "after expiry"):
                for region, fleet in fleets.items():
                    # Heard from just now, however long the other region's setup took.
                    fleet.heartbeat(hosts[region].name)
                    response = fleet.select(request_spec(project_id=identity.projects["demo"]))
                    assert response.status_code == 200, (region, round_, response.text)
                    chosen = response.json()["selections"][0][0]
                    assert chosen["compute_node_uuid"] == hosts[region].uuid, region
                if round_ == "first":
                    token = identity.token("nova", project="service")
                    time.sleep(keystone_fixture.TOKEN_EXPIRATION_S + 1)
            for region, fleet in fleets.items():
                # Tokens from before the wait are dead on both placements...
                expired = httpx.get(
                    placements[region] + "/resource_providers",
                    headers={**MICROVERSION, "x-auth-token": token},
                    timeout=TIMEOUT,
                )
                assert expired.status_code == 401, (region, expired.text)
                # ...and both claims were made through the schedulers' renewed tokens.
                assert fleet.usages(hosts[region].name)["VCPU"] == 2, region
    finally:
        for server in schedulers.values():
            server.stop()
