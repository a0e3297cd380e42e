"""``allotment sim run --url``: the replay against an allotment server over HTTP.

The cloud is built here first, in the throw-away database as for an in-process run (same
seed, same provider uuids), then copied to the server through its public APIs: each
host's provider tree with its inventories, traits and placement aggregates
(``ReportClient.publish``), its host report (``PUT /scheduler/v1/hosts/{host}``), the host
aggregates (``PUT /scheduler/v1/aggregates/{uuid}``), the instances already running
(``POST /allocations``, many consumers per call, and their instance info). The workload
then goes one call at a time: ``POST /scheduler/v1/select_destinations``, ``DELETE
/allocations/{consumer}`` and the instance-info calls.

A server that already holds providers is refused unless ``force``: the replay writes
providers and allocations, and hosts it did not build would take instances its books
cannot account for (a placement on one stops the run, naming the host).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from allotment import errors
from allotment.app import Services
from allotment.client.http import HttpTransport, error_code, error_detail
from allotment.client.report import MICROVERSION, ProviderSpec, ReportClient, Transport
from allotment.scheduler.records import InstanceInfo
from allotment.scheduler.request import RequestSpec
from allotment.sim.engine import Backend, Connect, Placed
from allotment.sim.fleet import PROJECT, USER, Cloud
from allotment.sim.scenario import Scenario

SCHEDULER_PREFIX = "/scheduler/v1"
# Consumers written per POST /allocations while copying the running instances.
ALLOCATIONS_PER_CALL = 500
# Real seconds between two rounds of host heartbeats (Nova's report_interval is 10 s, its
# service_down_time 60 s).
HEARTBEAT_S = 20.0


class Http:
    """The replay's calls over HTTP, one at a time (the server decides each alone), and
    the hosts' heartbeats every ``HEARTBEAT_S`` of real time, as their computes would
    send them."""

    def __init__(
        self,
        placement: Transport,
        scheduler: Transport,
        report: ReportClient,
        hosts: list[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.placement = placement
        self.scheduler = scheduler
        self.report = report
        self.hosts = hosts
        self.clock = clock
        self._beat = clock()

    def select(
        self, calls: list[tuple[RequestSpec, list[str]]]
    ) -> list[list[Placed] | errors.NoValidHost]:
        if self.clock() - self._beat >= HEARTBEAT_S:
            for host in self.hosts:
                self.report.heartbeat(host)
            self._beat = self.clock()
        return [self._select(spec, uuids) for spec, uuids in calls]

    def _select(self, spec: RequestSpec, uuids: list[str]) -> list[Placed] | errors.NoValidHost:
        body = {
            "instance_uuids": uuids,
            "request_spec": spec.model_dump(mode="json", exclude_defaults=True),
        }
        response = self.scheduler.request("POST", "/select_destinations", json=body)
        if response.status_code == 409 and error_code(response) == errors.NO_VALID_HOST:
            error = response.json()["errors"][0]
            return errors.NoValidHost(
                error_detail(response), explanation=error.get("explanation") or {}
            )
        _check(response, "select destinations", 200)
        return [
            (
                chosen[0]["host"],
                {
                    rp: {rc: int(n) for rc, n in held["resources"].items()}
                    for rp, held in chosen[0]["allocation_request"]["allocations"].items()
                },
            )
            for chosen in response.json()["selections"]
        ]

    def release(self, consumers: list[str]) -> None:
        for consumer in consumers:
            response = self.placement.request(
                "DELETE", f"/allocations/{consumer}", microversion=MICROVERSION
            )
            _check(response, "delete the allocations of an instance", 204, 404)

    def instances_on(self, host: str, infos: list[InstanceInfo]) -> None:
        response = self.scheduler.request(
            "PUT",
            f"/hosts/{host}/instances",
            json={"instances": [info.model_dump(mode="json") for info in infos]},
        )
        _check(response, f"record instances on {host}", 204)

    def instances_gone(self, gone: dict[str, list[str]]) -> None:
        for host, uuids in gone.items():
            for uuid in uuids:
                response = self.scheduler.request("DELETE", f"/hosts/{host}/instances/{uuid}")
                _check(response, f"delete an instance of {host}", 204, 404)


def check_scenario(scenario: Scenario) -> None:
    """A replay over HTTP runs the server's scheduler with the server's configuration: one
    policy, whose options other than allocation ratios (written into the inventories)
    would be silently ignored, so they are refused."""
    if len(scenario.policy) != 1:
        raise errors.ConfigError(
            "--url replays one policy (the server's configuration); the scenario has "
            f"{len(scenario.policy)}"
        )
    policy = scenario.policy[0]
    if policy.filter_scheduler or policy.scheduler:
        raise errors.ConfigError(
            f"policy {policy.name!r} sets [filter_scheduler] / [scheduler] options, which "
            "over --url are the server's: set them in its configuration and drop them here"
        )


def connect(url: str, token: str | None, *, force: bool = False) -> Connect:
    """The ``connect`` of a Simulation that replays on the server at ``url``."""

    def to_server(services: Services, cloud: Cloud) -> Backend:
        placement = HttpTransport(url, token=token)
        scheduler = HttpTransport(url.rstrip("/") + SCHEDULER_PREFIX, token=token)
        if not force:
            refuse_a_used_server(placement, url)
        return copy_cloud(services, cloud, placement, scheduler)

    return to_server


def refuse_a_used_server(placement: Transport, url: str) -> None:
    response = placement.request("GET", "/resource_providers", microversion=MICROVERSION)
    _check(response, "list the server's resource providers", 200)
    held = response.json()["resource_providers"]
    if held:
        raise errors.ConfigError(
            f"the server at {url} already has {len(held)} resource provider(s): the replay "
            "would write its cloud and claims next to them, and its books could not account "
            "for instances placed on them. Use an empty server, or --force."
        )


def copy_cloud(
    services: Services, cloud: Cloud, placement: Transport, scheduler: Transport
) -> Http:
    """Write the cloud built in ``services`` to the server behind the two transports;
    the backend that replays there."""
    local = services.placement
    assert services.host_manager is not None
    trees: dict[int, list[ProviderSpec]] = {}
    for p, uuid in enumerate(cloud.provider_uuid):
        provider, invs = local.get_inventories(uuid)
        _, traits = local.get_provider_traits(uuid)
        _, member_of = local.get_provider_aggregates(uuid)
        trees.setdefault(int(cloud.provider_root[p]), []).append(
            ProviderSpec(
                name=provider.name,
                uuid=uuid,
                parent_uuid=provider.parent_uuid,
                inventories={rc: _inventory(inv) for rc, inv in invs.items()},
                traits={t.name for t in traits},
                aggregates=set(member_of),
            )
        )
    report = ReportClient(placement, scheduler)
    hosts, aggregates, instances = services.host_manager.records()
    for h in range(len(cloud.hosts)):
        report.publish(trees[h])
    for record in hosts.values():
        report.report_host(
            record.host, record.report.model_dump(mode="json", exclude_defaults=True)
        )
    for aggregate in aggregates.values():
        body = {
            "name": aggregate.name,
            "hosts": sorted(aggregate.hosts),
            "metadata": aggregate.metadata,
        }
        response = scheduler.request("PUT", f"/aggregates/{aggregate.uuid}", json=body)
        _check(response, f"create host aggregate {aggregate.name}", 200)
    _copy_running(cloud, placement)
    backend = Http(placement, scheduler, report, sorted({r.host for r in hosts.values()}))
    for host, held in instances.items():
        backend.instances_on(host, list(held.values()))
    return backend


def _copy_running(cloud: Cloud, placement: Transport) -> None:
    """The allocations of the instances already running, many consumers per call."""
    writes = [
        (
            inst.consumer,
            {
                "allocations": {
                    cloud.provider_uuid[p]: {
                        "resources": {cloud.rcs[c]: amount for c, amount in per.items()}
                    }
                    for p, per in inst.allocations.items()
                },
                "project_id": PROJECT,
                "user_id": USER,
                "consumer_generation": None,
                "consumer_type": "INSTANCE",
            },
        )
        for inst in cloud.existing
    ]
    for start in range(0, len(writes), ALLOCATIONS_PER_CALL):
        response = placement.request(
            "POST",
            "/allocations",
            json=dict(writes[start : start + ALLOCATIONS_PER_CALL]),
            microversion=MICROVERSION,
        )
        _check(response, "write the allocations of the running instances", 204)


def _inventory(inv: Any) -> dict[str, Any]:
    return {
        "total": inv.total,
        "reserved": inv.reserved,
        "min_unit": inv.min_unit,
        "max_unit": inv.max_unit,
        "step_size": inv.step_size,
        "allocation_ratio": inv.allocation_ratio,
    }


def _check(response: Any, action: str, *ok: int) -> None:
    if response.status_code not in ok:
        failure = (
            errors.ServiceUnavailable if response.status_code >= 500 else errors.AllotmentError
        )
        raise failure(f"could not {action}: HTTP {response.status_code} {error_detail(response)}")
