"""Routed networks end to end: Nova 34's own SchedulerAPI over RabbitMQ asks allotment to
place instances on requested networks and ports; allotment asks a Neutron (a small peer
serving the GET calls Nova's ``routed_networks_filter`` makes, with Neutron's bodies) for
their segments, through keystoneauth1 with nova.conf's ``[neutron]`` options, and keeps
each instance in the placement aggregates of those segments, as Nova does.

The option itself comes from nova.conf's ``[scheduler]``, as an operator has it set."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import LiveServer
from tests.fleet import HEADERS, Fleet
from tests.integration.nova.conftest import CELL, NovaDriver, context, spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TOKEN = f"neutron-{uuid.uuid4().hex}"


@dataclass
class Neutron:
    """What the peer serves: extensions, ports and subnets, as Neutron's API shows them."""

    extensions: list[str] = field(default_factory=lambda: ["segment", "binding"])
    ports: dict[str, dict[str, Any]] = field(default_factory=dict)
    subnets: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (path with query, X-Auth-Token, X-OpenStack-Request-ID) of every request seen.
    seen: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if path == "/v2.0/extensions":
            return 200, {
                "extensions": [
                    {"alias": a, "name": a, "description": "", "updated": "2024-01-01T00:00:00Z"}
                    for a in self.extensions
                ]
            }
        if path.startswith("/v2.0/ports/"):
            port = self.ports.get(path.rsplit("/", 1)[1])
            if port is None:
                return 404, {
                    "NeutronError": {"type": "PortNotFound", "message": "not found", "detail": ""}
                }
            return 200, {"port": port}
        if path == "/v2.0/subnets":
            found = [s for s in self.subnets.values() if s["network_id"] in query["network_id"]]
            fields = query.get("fields")
            if fields:
                found = [{k: s[k] for k in fields} for s in found]
            return 200, {"subnets": found}
        if path.startswith("/v2.0/subnets/"):
            subnet = self.subnets.get(path.rsplit("/", 1)[1])
            if subnet is None:
                return 404, {
                    "NeutronError": {"type": "SubnetNotFound", "message": "gone", "detail": ""}
                }
            return 200, {"subnet": subnet}
        return 404, {"NeutronError": {"type": "HTTPNotFound", "message": path, "detail": ""}}

    def subnet(self, network: str, segment: str | None) -> str:
        subnet = str(uuid.uuid4())
        self.subnets[subnet] = {
            "id": subnet,
            "network_id": network,
            "segment_id": segment,
            "cidr": "192.0.2.0/24",
            "ip_version": 4,
            "name": "",
            "tenant_id": "p1",
            "project_id": "p1",
        }
        return subnet

    def port(self, network: str, subnet: str | None = None) -> str:
        port = str(uuid.uuid4())
        self.ports[port] = {
            "id": port,
            "network_id": network,
            "fixed_ips": []
            if subnet is None
            else [{"subnet_id": subnet, "ip_address": "192.0.2.7"}],
            "binding:vnic_type": "normal",
            "status": "DOWN",
            "tenant_id": "p1",
            "project_id": "p1",
        }
        return port


def serve_neutron(neutron: Neutron) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            neutron.seen.append(
                (
                    self.path,
                    self.headers.get("X-Auth-Token"),
                    self.headers.get("X-OpenStack-Request-ID"),
                )
            )
            status, body = neutron.answer(parts.path, parse_qs(parts.query))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class RoutedCloud:
    server: LiveServer
    fleet: Fleet
    nova: NovaDriver
    url: str
    neutron: Neutron
    # Networks and ports by role (see the fixture).
    ids: dict[str, str]

    def boot(self, *networks: dict[str, Any], count: int = 1) -> list[Any]:
        """``count`` boots, each asking for ``networks`` (NetworkRequest fields)."""
        calls = []
        for _ in range(count):
            instance = str(uuid.uuid4())
            requested = {
                "$obj": "NetworkRequestList",
                "objects": [{"$obj": "NetworkRequest", **n} for n in networks],
            }
            calls.append(
                {
                    "method": "select_destinations",
                    "context": context(),
                    "spec": spec(1, instance_uuid=instance, requested_networks=requested),
                    "instance_uuids": [instance],
                    "return_objects": True,
                    "return_alternates": False,
                }
            )
        request = {"transport_url": self.url, "placement_url": self.server.url, "calls": calls}
        answers: list[Any] = self.nova.run(request, timeout=300)
        return answers

    def hosts_of(self, answers: list[Any]) -> set[str]:
        found = set()
        for answer in answers:
            assert "result" in answer, answer
            ((selection,),) = answer["result"]
            found.add(selection["fields"]["service_host"])
        return found


@pytest.fixture
def routed(tmp_path: Path, rabbit_url: str, nova_python: Path) -> Iterator[RoutedCloud]:
    neutron = Neutron()
    peer = serve_neutron(neutron)
    nova_conf = tmp_path / "nova.conf"
    nova_conf.write_text(
        f"[DEFAULT]\ntransport_url = {rabbit_url}\nhost = sched-routed\n"
        "[scheduler]\nquery_placement_for_routed_network_aggregates = true\n"
        "[neutron]\nauth_type = admin_token\n"
        f"token = {TOKEN}\nendpoint = http://127.0.0.1:{peer.server_address[1]}\n"
        # Read the extensions on every request, so a test can take one away.
        "extension_sync_interval = 0\n"
    )
    settings = tmp_path / "allotment.toml"
    settings.write_text(f'[nova]\ncell_uuid = "{CELL}"\n[filter_scheduler]\nhost_subset_size = 1\n')
    server = LiveServer(
        f"sqlite:///{tmp_path / 'live.sqlite'}",
        tmp_path / "state",
        "--config",
        str(settings),
        "--nova-config",
        str(nova_conf),
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            fleet = Fleet(http)
            for name in ("h1", "h2", "h3"):
                fleet.host(name, vcpus=8, ram=16384, disk=200)
            # What Neutron's segments plugin makes: a host aggregate per segment with the
            # hosts that reach it, and the segment's provider (uuid = segment id) in it.
            segments = {}
            for name, hosts in (("seg1", ["h1"]), ("seg2", ["h2"])):
                aggregate = fleet.aggregate(name, hosts)
                segments[name] = fleet.provider(name, aggregates=[aggregate])
            for host in ("h1", "h2"):
                response = http.get(
                    f"/resource_providers/{fleet.hosts[host].uuid}/aggregates", headers=HEADERS
                )
                assert len(response.json()["aggregates"]) == 1, response.text
            # A segment Neutron made no aggregate for: a broken deployment.
            segments["seg3"] = fleet.provider("seg3")
            routed_net, plain_net, broken_net = (str(uuid.uuid4()) for _ in range(3))
            neutron.subnet(routed_net, segments["seg1"])
            on_seg2 = neutron.subnet(routed_net, segments["seg2"])
            neutron.subnet(plain_net, None)
            neutron.subnet(broken_net, segments["seg3"])
            ids = {
                "routed": routed_net,
                "plain": plain_net,
                "broken": broken_net,
                "bound_port": neutron.port(routed_net, on_seg2),
                "unbound_port": neutron.port(routed_net),
            }
            yield RoutedCloud(
                server,
                fleet,
                NovaDriver(nova_python, "scheduler_rpc.py"),
                rabbit_url,
                neutron,
                ids,
            )
    finally:
        server.stop()
        peer.shutdown()
        peer.server_close()


def test_instances_stay_on_the_segments_of_their_networks_and_ports(routed: RoutedCloud) -> None:
    ids = routed.ids
    # A routed network: any of its segments (h1 or h2), never h3, which reaches neither.
    assert routed.hosts_of(routed.boot({"network_id": ids["routed"]}, count=4)) == {"h1", "h2"}
    # A port with an IP on the subnet of seg2: h2 only.
    assert routed.hosts_of(routed.boot({"port_id": ids["bound_port"]}, count=2)) == {"h2"}
    # A port without an IP yet: its network's segments.
    unbound = routed.boot({"port_id": ids["unbound_port"]}, count=4)
    assert routed.hosts_of(unbound) == {"h1", "h2"}
    # Two NICs: the constraints AND (seg2 through the port, either through the network).
    both = routed.boot({"network_id": ids["routed"]}, {"port_id": ids["bound_port"]}, count=2)
    assert routed.hosts_of(both) == {"h2"}
    # A network that is not routed: anywhere; h3, the emptiest by now, is chosen.
    assert "h3" in routed.hosts_of(routed.boot({"network_id": ids["plain"]}, count=3))
    # Every call went out with Nova's [neutron] credentials and the request's global id.
    assert routed.neutron.seen
    assert {token for _, token, _ in routed.neutron.seen} == {TOKEN}
    assert all(rid and rid.startswith("req-") for _, _, rid in routed.neutron.seen)
    paths = [path for path, _, _ in routed.neutron.seen]
    assert {"/v2.0/extensions", f"/v2.0/ports/{ids['bound_port']}"} <= set(paths)
    assert any(
        p.startswith("/v2.0/subnets?") and "fields=segment_id" in p and ids["routed"] in p
        for p in paths
    )


def test_what_nova_refuses_is_no_valid_host_with_the_reason(routed: RoutedCloud) -> None:
    missing_port = str(uuid.uuid4())
    broken, unknown = routed.boot({"network_id": routed.ids["broken"]}) + routed.boot(
        {"port_id": missing_port}
    )
    for answer, reason in (
        (broken, f"Aggregates not found for the network {routed.ids['broken']}"),
        (unknown, f"Port {missing_port} could not be found in Neutron"),
    ):
        assert "error" in answer, answer
        assert "NoValidHost" in answer["error"]["nova_class"], answer
        assert reason in answer["error"]["message"], answer
    # Nothing was claimed for either.
    for host in routed.fleet.hosts:
        assert routed.fleet.usages(host).get("VCPU", 0) == 0


def test_without_neutron_s_segment_extension_networks_constrain_nothing(
    routed: RoutedCloud,
) -> None:
    routed.neutron.extensions = ["binding"]
    placed = routed.boot({"network_id": routed.ids["routed"]}, count=3)
    assert routed.hosts_of(placed) == {"h1", "h2", "h3"}
    # Nova asks for the extensions, then nothing about subnets.
    assert not any("/subnets" in path for path, _, _ in routed.neutron.seen)
