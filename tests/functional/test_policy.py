"""Policy as upstream Placement enforces it: secure-RBAC personas, scope, legacy defaults,
policy files that override rules, and start-up refusing a bad policy file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from allotment.app import build_services, create_app
from allotment.errors import ConfigError
from tests.conftest import PlacementClient, make_settings

PERSONAS: dict[str, dict[str, str]] = {
    "project_admin": {"x-roles": "admin,member,reader", "x-project-id": "p1"},
    "project_member": {"x-roles": "member,reader", "x-project-id": "p1"},
    "project_reader": {"x-roles": "reader", "x-project-id": "p1"},
    "other_reader": {"x-roles": "reader", "x-project-id": "p2"},
    "system_admin": {"x-roles": "admin,member,reader", "openstack-system-scope": "all"},
    "system_reader": {"x-roles": "reader", "openstack-system-scope": "all"},
    "service": {"x-roles": "service", "x-project-id": "services"},
}


def serve(tmp_path: Path, **oslo_policy: Any) -> Iterator[PlacementClient]:
    services = build_services(make_settings(tmp_path, oslo_policy=oslo_policy))
    try:
        with TestClient(create_app(services)) as test_client:
            yield PlacementClient(test_client, token="user")
    finally:
        services.db.dispose()


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[PlacementClient]:
    yield from serve(tmp_path)


def status(client: PlacementClient, persona: str, method: str, path: str, body: Any = None) -> int:
    return int(client.request(method, path, body, headers=PERSONAS[persona]).status_code)


def test_secure_defaults_allow_project_admins_and_services_only(
    secure: PlacementClient,
) -> None:
    expected = {
        "project_admin": 200,
        "service": 200,
        "project_member": 403,
        "project_reader": 403,
        # Placement 16's rules are project-scoped: a system-scoped token is refused.
        "system_admin": 403,
        "system_reader": 403,
    }
    for persona, code in expected.items():
        assert status(secure, persona, "GET", "/resource_providers") == code, persona


def test_project_reader_sees_only_its_own_project_usages(secure: PlacementClient) -> None:
    assert status(secure, "project_reader", "GET", "/usages?project_id=p1") == 200
    assert status(secure, "project_member", "GET", "/usages?project_id=p1") == 200
    assert status(secure, "other_reader", "GET", "/usages?project_id=p1") == 403
    assert status(secure, "project_admin", "GET", "/usages?project_id=p2") == 200


def test_reshaper_is_for_services_only(secure: PlacementClient) -> None:
    # A bad body gets a 400 only past policy: admins are refused before it is read.
    assert status(secure, "project_admin", "POST", "/reshaper", {"bad": 1}) == 403
    assert status(secure, "service", "POST", "/reshaper", {"bad": 1}) == 400


def test_legacy_defaults_let_an_admin_reshape(tmp_path: Path) -> None:
    for client in serve(tmp_path, enforce_new_defaults=False):
        assert status(client, "project_admin", "POST", "/reshaper", {"bad": 1}) == 400


def test_enforce_scope_off_lets_a_system_admin_through(tmp_path: Path) -> None:
    for client in serve(tmp_path, enforce_scope=False):
        assert status(client, "system_admin", "GET", "/resource_providers") == 200
        assert status(client, "system_reader", "GET", "/resource_providers") == 403


def test_policy_file_overrides_rules_by_name(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        '"placement:resource_providers:list": "role:reader and system_scope:all"\n'
        '"placement:resource_providers:create": "@"\n'
    )
    for client in serve(tmp_path, policy_file=str(policy_file), enforce_scope=False):
        assert status(client, "system_reader", "GET", "/resource_providers") == 200
        assert status(client, "project_admin", "GET", "/resource_providers") == 403
        created = status(client, "project_reader", "POST", "/resource_providers", {"name": "x"})
        assert created == 200
        # Rules the file leaves alone keep their defaults.
        assert status(client, "project_reader", "GET", "/traits") == 403


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('"placement:no_such_rule": "@"\n', "unknown rule(s) placement:no_such_rule"),
        ('"placement:traits:list": "role:admin or (("\n', "rule placement:traits:list"),
        ('"placement:traits:list": "rule:nowhere"\n', "undefined or cyclic"),
        ("[not, a, mapping]\n", "expected a mapping"),
        ("a: b: c\n", "neither YAML nor JSON"),
    ],
)
def test_a_bad_policy_file_stops_start_up_naming_the_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(content)
    with pytest.raises(ConfigError, match="policy") as raised:
        build_services(make_settings(tmp_path, oslo_policy={"policy_file": str(policy_file)}))
    assert message in str(raised.value)
    assert str(policy_file) in str(raised.value)


def test_noauth_reads_identity_headers_as_upstream(secure: PlacementClient) -> None:
    # The token names user and project; x-project-id wins over the token's project.
    headers = {"x-roles": "reader", "x-project-id": "p9"}
    own = secure.get("/usages?project_id=p9", headers={**headers, "x-auth-token": "u:p1"})
    other = secure.get("/usages?project_id=p1", headers={**headers, "x-auth-token": "u:p1"})
    assert (own.status_code, other.status_code) == (200, 403)
    # Without x-roles, the token "admin" is an admin of project "admin".
    admin = secure.get("/resource_providers", headers={"x-auth-token": "admin"})
    assert admin.status_code == 200
