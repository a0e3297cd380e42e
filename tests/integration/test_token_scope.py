"""System scope for allotment's own tokens: ``allotment token create --system all`` makes a
token the policy sees exactly as it sees a Keystone system-scoped token, so a standalone
deployment can have a system reader; project-scoped tokens keep upstream's secure-RBAC
answers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from allotment.auth.base import context_from_identity_headers
from allotment.auth.policy import PolicyEngine
from allotment.auth.tokens import TokenAuth, TokenStore
from allotment.db import migrate
from allotment.db.database import Database
from allotment.errors import Forbidden
from tests.conftest import LiveServer

pytestmark = pytest.mark.integration
MICROVERSION = {"openstack-api-version": "placement 1.39"}


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "allotment.cli", "token", *args, "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def create(database_url: str, *args: str) -> str:
    done = cli(database_url, "create", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TokenStore]:
    db = Database(f"sqlite:///{tmp_path / 'tokens.sqlite'}")
    migrate.prepare(db)
    yield TokenStore(db)
    db.dispose()


def test_a_system_token_reaches_the_policy_as_keystones_does(store: TokenStore) -> None:
    token = store.create("auditor", ["reader"], system_scope="all")
    own = TokenAuth(store).authenticate({"x-auth-token": token}, "req-1")
    keystone = context_from_identity_headers(
        {"x-user-id": "auditor", "x-roles": "reader", "openstack-system-scope": "all"}, "req-2"
    )
    assert own is not None
    assert own.policy_values() == keystone.policy_values()
    assert own.system_scope == "all" and own.project_id is None
    (listed,) = store.list()
    assert listed.system_scope == "all"
    # Placement 16's rules are project-scoped: with scope enforced (the default) a system
    # token is refused them, as upstream refuses a Keystone one.
    with pytest.raises(Forbidden):
        PolicyEngine().authorize(own, "placement:resource_providers:list")


def test_a_token_has_one_scope_and_only_keystones_system_scope(
    store: TokenStore, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="a project or to the system, not both"):
        store.create("both", ["reader"], project_id="demo", system_scope="all")
    with pytest.raises(ValueError, match="system scope must be all"):
        store.create("domain", ["reader"], system_scope="domain")
    assert store.list() == []
    url = store.db.url
    both = cli(url, "create", "x", "--role", "reader", "--system", "all", "--project", "p")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    other = cli(url, "create", "x", "--role", "reader", "--system", "cloud")
    assert other.returncode == 2 and "invalid choice: 'cloud'" in other.stderr
    assert store.list() == []


def test_a_system_reader_lists_providers_but_does_not_write(
    store: TokenStore, tmp_path: Path
) -> None:
    url = store.db.url
    auditor = create(url, "auditor", "--role", "reader", "--system", "all")
    demo_reader = create(url, "demo-reader", "--role", "reader", "--project", "demo")
    service = create(url, "nova", "--role", "service", "--project", "service")
    listed = cli(url, "list")
    assert "auditor\tuser=auditor\tsystem=all\troles=reader" in listed.stdout
    assert "demo-reader\tuser=demo-reader\tproject=demo\troles=reader" in listed.stdout

    # The operator's policy lets system readers read providers, as in test_keystone.py.
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        '"placement:resource_providers:list": '
        '"rule:admin_or_service_api or (role:reader and system_scope:all)"\n'
    )
    config = tmp_path / "allotment.toml"
    config.write_text(f'[oslo_policy]\nenforce_scope = false\npolicy_file = "{policy_file}"\n')
    server = LiveServer(url, tmp_path / "state", "--config", str(config), auth="token")
    try:
        with httpx.Client(base_url=server.url, headers=MICROVERSION, timeout=30) as http:

            def call(method: str, path: str, token: str, body: object = None) -> int:
                headers = {"x-auth-token": token}
                return http.request(method, path, json=body, headers=headers).status_code

            assert call("POST", "/resource_providers", service, {"name": "cn1"}) == 200
            assert call("GET", "/resource_providers", auditor) == 200
            providers = http.get("/resource_providers", headers={"x-auth-token": auditor})
            assert [rp["name"] for rp in providers.json()["resource_providers"]] == ["cn1"]
            assert call("POST", "/resource_providers", auditor, {"name": "nope"}) == 403
            assert call("PUT", "/traits/CUSTOM_NOPE", auditor) == 403
            # Rules the policy file leaves alone stay admin-or-service.
            assert call("GET", "/traits", auditor) == 403
            # A project reader without system scope: upstream's secure RBAC gives it its
            # own project's usages and nothing of the providers.
            assert call("GET", "/resource_providers", demo_reader) == 403
            assert call("GET", "/usages?project_id=demo", demo_reader) == 200
            assert call("GET", "/usages?project_id=other", demo_reader) == 403
            names = http.get("/resource_providers", headers={"x-auth-token": service}).json()
            assert [rp["name"] for rp in names["resource_providers"]] == ["cn1"]
    finally:
        server.stop()
