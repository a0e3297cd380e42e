"""OpenStack's own clients, unmodified, against ``allotment serve`` with token auth on:
python-openstackclient + osc-placement (as subprocesses) and openstacksdk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, LiveServer

OPENSTACK = Path(sys.executable).with_name("openstack")
# openstacksdk warns about its own internals on every call; nothing we can act on.
pytestmark = pytest.mark.filterwarnings("ignore:::openstack")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("clients")
    live = LiveServer(f"sqlite:///{base / 'db.sqlite'}", base / "state", auth="token")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def token(server: LiveServer) -> str:
    return (server.state_dir / "admin-token").read_text().strip()


def osc(server: LiveServer, token: str, *args: str, version: str = "1.39") -> Any:
    if not OPENSTACK.exists():
        message = "python-openstackclient is not installed (pip install -e '.[clients]')"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    command = [
        str(OPENSTACK),
        "--os-auth-type", "admin_token",
        "--os-endpoint", server.url,
        "--os-token", token,
        "--os-placement-api-version", version,
        *args,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
    return json.loads(result.stdout) if "-f" in args and "json" in args else result.stdout


def test_cli_provider_inventory_trait_aggregate_allocation_usage(
    server: LiveServer, token: str
) -> None:
    rp = osc(server, token, "resource provider", "create", "cli-cn1", "-f", "json")
    rp_uuid = rp["uuid"]
    child = osc(
        server, token, "resource provider", "create", "cli-cn1-numa0",
        "--parent-provider", rp_uuid, "-f", "json",
    )  # fmt: skip
    assert child["root_provider_uuid"] == rp_uuid
    listed = osc(server, token, "resource provider", "list", "--in-tree", rp_uuid, "-f", "json")
    assert {p["name"] for p in listed} == {"cli-cn1", "cli-cn1-numa0"}

    osc(
        server, token, "resource provider", "inventory", "set", rp_uuid,
        "--resource", "VCPU=16", "--resource", "VCPU:allocation_ratio=2.0",
        "--resource", "MEMORY_MB=4096", "-f", "json",
    )  # fmt: skip
    inventories = osc(
        server, token, "resource provider", "inventory", "list", rp_uuid, "-f", "json"
    )
    by_class = {row["resource_class"]: row for row in inventories}
    assert by_class["VCPU"]["total"] == 16 and by_class["VCPU"]["allocation_ratio"] == 2.0

    osc(server, token, "resource class", "create", "CUSTOM_CLI_CLASS")
    classes = osc(server, token, "resource class", "list", "-f", "json")
    assert "CUSTOM_CLI_CLASS" in {c["name"] for c in classes}

    osc(server, token, "trait", "create", "CUSTOM_CLI_TRAIT")
    osc(
        server, token, "resource provider", "trait", "set", rp_uuid,
        "--trait", "CUSTOM_CLI_TRAIT", "--trait", "HW_CPU_X86_AVX2", "-f", "json",
    )  # fmt: skip
    traits = osc(server, token, "resource provider", "trait", "list", rp_uuid, "-f", "json")
    assert {t["name"] for t in traits} == {"CUSTOM_CLI_TRAIT", "HW_CPU_X86_AVX2"}

    aggregate = str(uuid.uuid4())
    osc(
        server, token, "resource provider", "aggregate", "set", rp_uuid,
        "--aggregate", aggregate, "--generation", "2", "-f", "json",
    )  # fmt: skip
    aggregates = osc(server, token, "resource provider", "aggregate", "list", rp_uuid, "-f", "json")
    assert [a["uuid"] for a in aggregates] == [aggregate]

    consumer = str(uuid.uuid4())
    project, user = str(uuid.uuid4()), str(uuid.uuid4())
    osc(
        server, token, "resource provider", "allocation", "set", consumer,
        "--allocation", f"rp={rp_uuid},VCPU=4,MEMORY_MB=1024",
        "--project-id", project, "--user-id", user, "--consumer-type", "INSTANCE",
        "-f", "json",
    )  # fmt: skip
    shown = osc(server, token, "resource provider", "allocation", "show", consumer, "-f", "json")
    assert shown[0]["resources"] == {"VCPU": 4, "MEMORY_MB": 1024}
    usage = osc(server, token, "resource provider", "usage", "show", rp_uuid, "-f", "json")
    assert {u["resource_class"]: u["usage"] for u in usage} == {"VCPU": 4, "MEMORY_MB": 1024}
    totals = osc(server, token, "resource usage", "show", project, "-f", "json", version="1.9")
    assert {u["resource_class"]: u["usage"] for u in totals} == {"VCPU": 4, "MEMORY_MB": 1024}
    # from 1.38 usages are grouped by consumer type, with a consumer count
    grouped = osc(server, token, "resource usage", "show", project, "-f", "json")
    assert {u["resource_class"]: u["usage"] for u in grouped} == {
        "INSTANCE": {"VCPU": 4, "MEMORY_MB": 1024, "consumer_count": 1}
    }

    osc(server, token, "resource provider", "allocation", "delete", consumer)
    osc(server, token, "resource provider", "delete", child["uuid"])
    osc(server, token, "resource provider", "delete", rp_uuid)
    assert osc(server, token, "resource provider", "list", "--name", "cli-cn1", "-f", "json") == []


def test_cli_without_a_valid_token_is_refused(server: LiveServer) -> None:
    if not OPENSTACK.exists() or shutil.which(str(OPENSTACK)) is None:
        pytest.skip("python-openstackclient is not installed")
    result = subprocess.run(
        [str(OPENSTACK), "--os-auth-type", "admin_token", "--os-endpoint", server.url,
         "--os-token", "not-a-token", "resource provider", "list"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "401" in result.stderr or "Unauthorized" in result.stderr


def test_openstacksdk(server: LiveServer, token: str) -> None:
    openstack = pytest.importorskip("openstack")
    conn = openstack.connection.Connection(
        auth_type="admin_token",
        auth={"token": token, "endpoint": server.url},
        placement_endpoint_override=server.url,
        placement_api_version="1.39",
    )
    placement = conn.placement
    rp = placement.create_resource_provider(name="sdk-cn1")
    assert rp.generation == 0
    placement.create_resource_provider_inventory(rp, resource_class="VCPU", total=8)
    placement.create_resource_provider_inventory(
        rp, resource_class="DISK_GB", total=100, reserved=10
    )
    inventories = {i.resource_class: i for i in placement.resource_provider_inventories(rp)}
    assert inventories["DISK_GB"].reserved == 10
    placement.create_trait("CUSTOM_SDK_TRAIT")
    assert "CUSTOM_SDK_TRAIT" in {t.name for t in placement.traits()}
    placement.create_resource_class(name="CUSTOM_SDK_CLASS")
    assert "CUSTOM_SDK_CLASS" in {c.name for c in placement.resource_classes()}
    aggregate = str(uuid.uuid4())
    rp = placement.get_resource_provider(rp.id)
    placement.set_resource_provider_aggregates(rp, aggregate)
    fetched = placement.fetch_resource_provider_aggregates(rp)
    assert list(fetched.aggregates) == [aggregate]
    assert [p.name for p in placement.resource_providers(name="sdk-cn1")] == ["sdk-cn1"]
    placement.delete_resource_provider_inventory("DISK_GB", resource_provider=rp)
    remaining = {i.resource_class for i in placement.resource_provider_inventories(rp)}
    assert remaining == {"VCPU"}
    placement.delete_resource_provider(rp)
    assert list(placement.resource_providers(name="sdk-cn1")) == []
