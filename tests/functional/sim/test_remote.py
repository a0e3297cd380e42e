"""``allotment sim run --url``: the cloud built on a real ``allotment serve`` through its
HTTP APIs and the workload replayed there; the simulation's books against the server's
ledger at every checkpoint, and a server that already holds providers refused."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from allotment import errors
from allotment.cli import main
from allotment.sim import remote
from allotment.sim.engine import Simulation
from allotment.sim.scenario import Scenario, parse_scenario
from allotment.sim.workload import generate
from tests.conftest import LiveServer
from tests.functional.sim.conftest import scenario_data, toml_text

Held = dict[str, dict[tuple[str, str], int]]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    live = LiveServer(f"sqlite:///{tmp_path / 'sim.sqlite'}", tmp_path / "state", auth="token")
    yield live, (tmp_path / "state" / "admin-token").read_text().strip()
    live.stop()


def server_ledger(client: httpx.Client, providers: list[str]) -> Held:
    """consumer -> {(provider, class): used}, from every provider's allocations."""
    held: Held = defaultdict(dict)
    for rp in providers:
        response = client.get(f"/resource_providers/{rp}/allocations")
        assert response.status_code == 200, response.text
        for consumer, found in response.json()["allocations"].items():
            for rc, used in found["resources"].items():
                held[consumer][(rp, rc)] = used
    return dict(held)


def test_replay_over_http_keeps_the_server_ledger_equal_to_the_books(
    server: tuple[LiveServer, str], tiny: Scenario
) -> None:
    live, token = server
    scenario = parse_scenario(scenario_data(requests=60))
    headers = {"x-auth-token": token, "openstack-api-version": "placement 1.39"}
    client = httpx.Client(base_url=live.url, headers=headers, timeout=30)
    checked: list[float] = []

    def check(sim: Simulation, t: float) -> None:
        cloud = sim.cloud
        books = {
            inst.consumer: {
                (cloud.provider_uuid[p], cloud.rcs[c]): amount
                for p, per in inst.allocations.items()
                for c, amount in per.items()
            }
            for inst in sim.alive.values()
        }
        assert server_ledger(client, cloud.provider_uuid) == books, f"at {t} h"
        hosts = client.get("/scheduler/v1/hosts").json()
        assert len(hosts["hosts"]) == len(cloud.hosts)
        checked.append(t)

    sim = Simulation(
        scenario,
        scenario.policy[0],
        generate(scenario),
        on_checkpoint=check,
        connect=remote.connect(live.url, token),
    )
    try:
        result = sim.run()
        # The server now holds providers: a second replay is refused, nothing written.
        with pytest.raises(errors.ConfigError, match="already has 22 resource provider"):
            remote.refuse_a_used_server(remote.HttpTransport(live.url, token=token), live.url)
    finally:
        sim.close()
        client.close()
    assert len(checked) == scenario.checkpoints
    totals = result.totals
    assert totals["instances_placed"] > 20, totals
    assert totals["departures"] > 0 and totals["existing_instances"] > 0, totals
    assert totals["instances_rejected"] > 0, totals
    assert (
        totals["instances_placed"] + totals["instances_rejected"] == (totals["instances_requested"])
    )


def test_cli_refuses_a_server_with_providers_and_writes_nothing(
    server: tuple[LiveServer, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live, token = server
    created = httpx.post(
        f"{live.url}/resource_providers",
        json={"name": "someone-elses", "uuid": "5d9b4f0e-8f7c-4b8e-9a59-2a8f3c1d0e11"},
        headers={"x-auth-token": token, "openstack-api-version": "placement 1.39"},
        timeout=30,
    )
    assert created.status_code == 200, created.text
    path = tmp_path / "tiny.toml"
    path.write_text(toml_text(scenario_data(requests=10)))
    out = tmp_path / "out"
    args = ["sim", "run", str(path), "--out", str(out), "--url", live.url, "--quiet"]
    assert main([*args, "--token", token]) == 2
    assert "already has 1 resource provider" in capsys.readouterr().err
    assert not out.exists()
    listed = httpx.get(
        f"{live.url}/resource_providers", headers={"x-auth-token": token}, timeout=30
    )
    providers = listed.json()["resource_providers"]
    assert [p["name"] for p in providers] == ["someone-elses"]
