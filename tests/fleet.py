"""A small cloud built through the public HTTP APIs, for scheduling tests: compute hosts
as placement providers (inventories, traits, aggregates, nested children) that report to
the scheduler, host aggregates, and ``select_destinations`` / ``explain`` calls.

Works over any ``httpx.Client``: Starlette's TestClient (in-process) or one bound to a live
``allotment serve``. Providers are published through ``ReportClient``, the code a compute
host runs, so every scheduling test exercises it too.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from allotment.client import ClientTransport, ProviderSpec, ReportClient

SCHEDULER = "/scheduler/v1"
HEADERS = {
    "x-auth-token": "admin",
    "openstack-api-version": "placement 1.39",
    "accept": "application/json",
}


def flavor(
    vcpus: int = 1, memory_mb: int = 1024, root_gb: int = 10, **extra: Any
) -> dict[str, Any]:
    return {
        "name": f"f{vcpus}-{memory_mb}-{root_gb}",
        "vcpus": vcpus,
        "memory_mb": memory_mb,
        "root_gb": root_gb,
        **extra,
    }


def request_spec(**fields: Any) -> dict[str, Any]:
    fields.setdefault("flavor", flavor())
    return {"project_id": "p1", "user_id": "u1", **fields}


@dataclass
class Host:
    name: str
    uuid: str
    children: dict[str, str] = field(default_factory=dict)  # name -> provider uuid
    tree: list[ProviderSpec] = field(default_factory=list)  # as published, root first
    report: dict[str, Any] = field(default_factory=dict)  # the last host report sent


class Fleet:
    def __init__(
        self,
        http: Any,
        *,
        placement: Any = None,
        headers: dict[str, str] | None = None,
        also: tuple[Any, ...] = (),
    ):
        """``http`` serves the scheduler API; ``placement`` (default: the same) the
        Placement API where the hosts are created; host reports and aggregates go to the
        schedulers in ``also`` too (other processes' host caches)."""
        self.http = http
        self.placement = placement if placement is not None else http
        self.also = also
        self.headers = dict(headers or HEADERS)
        self.hosts: dict[str, Host] = {}

    # -- plumbing ---------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        to: Any = None,
        expect: int | tuple[int, ...] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        target = to if to is not None else self.placement
        kwargs: dict[str, Any] = {"headers": {**self.headers, **(headers or {})}}
        if body is not None:
            kwargs["json"] = body
        response = target.request(method, path, **kwargs)
        if expect is not None:
            wanted = expect if isinstance(expect, tuple) else (expect,)
            assert response.status_code in wanted, (method, path, response.text)
        return response

    def reporter(self, scheduler: Any = None) -> ReportClient:
        """The ReportClient a compute host would run, over this fleet's clients."""
        return ReportClient(
            ClientTransport(self.placement, headers=self.headers),
            ClientTransport(
                scheduler if scheduler is not None else self.http,
                headers=self.headers,
                prefix=SCHEDULER,
            ),
        )

    def provider(
        self,
        name: str,
        *,
        parent: str | None = None,
        inventories: dict[str, dict[str, Any]] | None = None,
        traits: list[str] | None = None,
        aggregates: list[str] | None = None,
    ) -> str:
        """A provider published through ReportClient, as a compute host publishes one."""
        spec = ProviderSpec(
            name,
            str(uuidlib.uuid4()),
            parent,
            dict(inventories or {}),
            set(traits or ()),
            set(aggregates or ()),
        )
        self.reporter().publish([spec])
        return spec.uuid

    # -- building ---------------------------------------------------------------------

    def host(
        self,
        name: str,
        *,
        vcpus: int = 8,
        ram: int = 16384,
        disk: int = 200,
        cpu_ratio: float = 1.0,
        traits: list[str] | None = None,
        children: dict[str, dict[str, Any]] | None = None,
        report: dict[str, Any] | None = None,
    ) -> Host:
        """A compute node: a root provider with VCPU / MEMORY_MB / DISK_GB (none when
        ``disk`` is 0), optional
        traits and child providers (``{"gpu0": {"inventories": {...}, "traits": [...]}}``),
        published through ReportClient, and a host report to the scheduler."""
        inventories: dict[str, dict[str, Any]] = {
            "VCPU": {"total": vcpus, "allocation_ratio": cpu_ratio},
            "MEMORY_MB": {"total": ram},
        }
        if disk:  # no local disk: DISK_GB comes from a sharing provider
            inventories["DISK_GB"] = {"total": disk}
        root = ProviderSpec(name, str(uuidlib.uuid4()), None, inventories, set(traits or ()))
        tree = [root]
        host = Host(name, root.uuid, tree=tree)
        for child, spec in (children or {}).items():
            tree.append(
                ProviderSpec(
                    f"{name}_{child}",
                    str(uuidlib.uuid4()),
                    root.uuid,
                    spec["inventories"],
                    set(spec.get("traits") or ()),
                )
            )
            host.children[child] = tree[-1].uuid
        self.reporter().publish(tree)
        body = {
            "compute_node_uuid": root.uuid,
            "hypervisor_type": "QEMU",
            "supported_instances": [["x86_64", "kvm", "hvm"]],
            **(report or {}),
        }
        host.report = body
        self.hosts[name] = host
        self.heartbeat(name)
        return host

    def heartbeat(self, name: str) -> None:
        """Send ``name``'s host report to the schedulers again (it is also the heartbeat)."""
        for scheduler in (self.http, *self.also):
            self.reporter(scheduler).report_host(name, self.hosts[name].report)

    def shared_disk(self, name: str, disk: int, aggregate: str, *hosts: str) -> str:
        """A sharing provider of DISK_GB for ``hosts`` (placement aggregate ``aggregate``):
        the hosts publish their root providers again, now in the aggregate."""
        rp = self.provider(
            name,
            inventories={"DISK_GB": {"total": disk}},
            traits=["MISC_SHARES_VIA_AGGREGATE"],
            aggregates=[aggregate],
        )
        for host in hosts:
            tree = self.hosts[host].tree
            tree[0].aggregates.add(aggregate)
            self.reporter().publish(tree)
        return rp

    def aggregate(self, name: str, hosts: list[str], **metadata: str) -> str:
        """A host aggregate (the scheduler mirrors membership into placement)."""
        agg = str(uuidlib.uuid4())
        body = {"name": name, "hosts": hosts, "metadata": metadata}
        for scheduler in (self.http, *self.also):
            self.call("PUT", f"{SCHEDULER}/aggregates/{agg}", body, to=scheduler, expect=200)
        return agg

    # -- scheduling -------------------------------------------------------------------

    def select(
        self,
        spec: dict[str, Any],
        count: int = 1,
        *,
        alternates: bool = False,
        uuids: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The raw ``select_destinations`` response."""
        body = {
            "instance_uuids": uuids or [str(uuidlib.uuid4()) for _ in range(count)],
            "return_alternates": alternates,
            "request_spec": spec,
        }
        return self.call(
            "POST", f"{SCHEDULER}/select_destinations", body, to=self.http, headers=headers
        )

    def place(self, spec: dict[str, Any], count: int = 1, **kw: Any) -> list[str]:
        """Host names chosen for ``count`` instances (asserting a 200)."""
        response = self.select(spec, count, **kw)
        assert response.status_code == 200, response.text
        return [chosen[0]["host"] for chosen in response.json()["selections"]]

    def explain(self, spec: dict[str, Any], count: int = 1, **extra: Any) -> Any:
        body = {
            "instance_uuids": [str(uuidlib.uuid4()) for _ in range(count)],
            "request_spec": spec,
            **extra,
        }
        return self.call("POST", f"{SCHEDULER}/explain", body, to=self.http, expect=200).json()

    def usages(self, host: str, child: str | None = None) -> dict[str, int]:
        found = self.hosts[host]
        rp = found.children[child] if child else found.uuid
        usages: dict[str, int] = self.call(
            "GET", f"/resource_providers/{rp}/usages", expect=200
        ).json()["usages"]
        return usages

    def allocations(self, consumer: str) -> dict[str, Any]:
        found: dict[str, Any] = self.call("GET", f"/allocations/{consumer}", expect=200).json()[
            "allocations"
        ]
        return found
