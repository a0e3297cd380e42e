"""The agent's loop: publish the machine to placement (its resource provider, inventory
and CPU traits, through ``ReportClient``), send the host report to the scheduler, then a
heartbeat every ``interval`` seconds (keep it well under the scheduler's
``service_down_time``, 60 s by default, as Nova's ``report_interval`` of 10 s is).

The machine is read again every ``refresh`` seconds and republished when it changed
(memory hot-plugged, a disk grown). When the server cannot be reached or refuses, the
agent waits with exponential backoff and jitter (up to ``max_backoff``) and starts again
from the publish: a server restarted on an empty database gets the provider back.
``deregister`` removes the host record from the scheduler and the provider from placement
(placement refuses while instances still hold allocations on it).
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allotment import errors
from allotment.agent.machine import Machine, MachineError, read_machine
from allotment.client.http import HttpTransport, error_detail
from allotment.client.report import ProviderSpec, ReportClient

LOG = logging.getLogger(__name__)
# Node uuids derived from the node name are stable across reinstalls of the agent.
NODE_NAMESPACE = uuidlib.UUID("5b8c3d8e-6c1f-4f5e-9d0a-9a4e0c7d2b61")


@dataclass
class AgentOptions:
    url: str
    token: str | None = None
    host: str = ""
    nodename: str = ""
    node_uuid: str = ""
    root: Path = Path("/")
    disk_path: str = "/var/lib"
    scheduler_prefix: str = "/scheduler/v1"
    interval: float = 10.0
    refresh: float = 300.0
    max_backoff: float = 60.0
    reserved_memory_mb: int = 512
    reserved_disk_gb: int = 0
    reserved_vcpus: int = 0
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    hypervisor_type: str = "QEMU"

    def __post_init__(self) -> None:
        self.host = self.host or socket.gethostname()
        self.nodename = self.nodename or self.host
        self.node_uuid = self.node_uuid or str(uuidlib.uuid5(NODE_NAMESPACE, self.nodename))


def provider_of(options: AgentOptions, machine: Machine) -> ProviderSpec:
    """The compute node's resource provider: VCPU, MEMORY_MB, DISK_GB and CPU traits."""
    inventories: dict[str, dict[str, Any]] = {
        "VCPU": {
            "total": machine.vcpus,
            "reserved": min(options.reserved_vcpus, machine.vcpus),
            "max_unit": machine.vcpus,
            "allocation_ratio": options.cpu_allocation_ratio,
        },
        "MEMORY_MB": {
            "total": machine.memory_mb,
            "reserved": min(options.reserved_memory_mb, machine.memory_mb),
            "max_unit": machine.memory_mb,
            "allocation_ratio": options.ram_allocation_ratio,
        },
    }
    if machine.disk_gb > 0:
        inventories["DISK_GB"] = {
            "total": machine.disk_gb,
            "reserved": min(options.reserved_disk_gb, machine.disk_gb),
            "max_unit": machine.disk_gb,
            "allocation_ratio": options.disk_allocation_ratio,
        }
    return ProviderSpec(
        name=options.nodename,
        uuid=options.node_uuid,
        inventories=inventories,
        traits=machine.traits,
    )


def report_of(options: AgentOptions, machine: Machine) -> dict[str, Any]:
    """The host report (``PUT /scheduler/v1/hosts/{host}``)."""
    report: dict[str, Any] = {
        "nodename": options.nodename,
        "compute_node_uuid": options.node_uuid,
        "hypervisor_type": options.hypervisor_type,
        "cpu_info": {
            "arch": machine.arch,
            "vendor": machine.vendor,
            "model": machine.model,
            "features": machine.flags,
        },
        "supported_instances": [[machine.arch, options.hypervisor_type.lower(), "hvm"]],
        "cpu_allocation_ratio": options.cpu_allocation_ratio,
        "ram_allocation_ratio": options.ram_allocation_ratio,
    }
    numa = machine.numa_topology()
    if numa is not None:
        report["numa_topology"] = numa
    return report


class Agent:
    def __init__(self, options: AgentOptions, *, rng: random.Random | None = None) -> None:
        self.options = options
        self.rng = rng or random.Random()
        self.stopping = threading.Event()
        base = options.url.rstrip("/")
        self.placement = HttpTransport(base, token=options.token, retries=1)
        self.scheduler = HttpTransport(
            base + options.scheduler_prefix,
            token=options.token,
            service_type="scheduler",
            retries=1,
        )
        self.client = ReportClient(self.placement, self.scheduler)
        self._published: tuple[ProviderSpec, dict[str, Any]] | None = None

    def close(self) -> None:
        self.placement.close()
        self.scheduler.close()

    def describe(self) -> dict[str, Any]:
        """What the agent would publish now (``allotment agent show``)."""
        machine = read_machine(self.options.root, self.options.disk_path)
        provider = provider_of(self.options, machine)
        return {
            "host": self.options.host,
            "provider": {
                "name": provider.name,
                "uuid": provider.uuid,
                "inventories": provider.inventories,
                "traits": sorted(provider.traits),
            },
            "report": report_of(self.options, machine),
        }

    def publish(self) -> None:
        """Read the machine; publish the provider and send the report (a heartbeat)."""
        machine = read_machine(self.options.root, self.options.disk_path)
        provider, report = provider_of(self.options, machine), report_of(self.options, machine)
        self.client.publish([provider])
        self.client.report_host(self.options.host, report)
        if self._published != (provider, report):
            LOG.info(
                "published %s (node %s): %d VCPU, %d MB, %d GB, %d CPU traits, %d NUMA cell(s)",
                self.options.host,
                self.options.node_uuid,
                machine.vcpus,
                machine.memory_mb,
                machine.disk_gb,
                len(provider.traits),
                len(machine.numa_cells),
            )
        self._published = (provider, report)

    def heartbeat(self) -> None:
        self.client.heartbeat(self.options.host)

    def run(self, *, once: bool = False) -> int:
        """Publish, then heartbeat until stopped; returns the exit status."""
        failures = 0
        next_publish = 0.0
        while not self.stopping.is_set():
            try:
                if time.monotonic() >= next_publish or self._published is None:
                    self.publish()
                    next_publish = time.monotonic() + self.options.refresh
                else:
                    self.heartbeat()
                if failures:
                    LOG.info("the server answers again after %d failed attempt(s)", failures)
                failures = 0
                if once:
                    return 0
                self.stopping.wait(self.options.interval)
            except MachineError as exc:
                LOG.error("%s", exc)
                return 2
            except errors.AllotmentError as exc:
                if once:
                    LOG.error("%s", exc.message)
                    return 1
                failures += 1
                delay = min(self.options.max_backoff, self.options.interval * 2 ** (failures - 1))
                delay *= 0.5 + self.rng.random() / 2
                LOG.warning("%s; trying again in %.1f s", exc.message, delay)
                self._published = None  # publish everything again once it answers
                self.stopping.wait(delay)
        return 0

    def deregister(self) -> int:
        """Remove the host from the scheduler and its provider from placement."""
        response = self.scheduler.request("DELETE", f"/hosts/{self.options.host}")
        if response.status_code not in (204, 404):
            LOG.error(
                "could not remove host %s from the scheduler: HTTP %d %s",
                self.options.host,
                response.status_code,
                error_detail(response),
            )
            return 1
        try:
            self.client.delete_provider(self.options.node_uuid)
        except errors.AllotmentError as exc:
            LOG.error("%s", exc.message)
            return 1
        LOG.info("deregistered %s (node %s)", self.options.host, self.options.node_uuid)
        return 0
