"""A small cloud built through the public HTTP APIs, for scheduling tests: compute hosts
as placement providers (inventories, traits, aggregates, nested children) that report to
the scheduler, host aggregates, and ``select_destinations`` / ``explain`` calls.

Works over anything with ``request(method, path, json=..., headers=...)`` returning an
httpx-style response: Starlette's TestClient (in-process) or an ``httpx.Client`` bound to
a live ``allotment serve``.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

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

    def _provider(self, name: str, parent: str | None = None) -> str:
        rp = str(uuidlib.uuid4())
        body: dict[str, Any] = {"name": name, "uuid": rp}
        if parent:
            body["parent_provider_uuid"] = parent
        self.call("POST", "/resource_providers", body, expect=200)
        return rp

    def _inventories(self, rp: str, inventories: dict[str, dict[str, Any]]) -> None:
        generation = self.call("GET", f"/resource_providers/{rp}", expect=200).json()["generation"]
        body = {"resource_provider_generation": generation, "inventories": inventories}
        self.call("PUT", f"/resource_providers/{rp}/inventories", body, expect=200)

    def _traits(self, rp: str, traits: list[str]) -> None:
        for trait in traits:
            if trait.startswith("CUSTOM_"):
                self.call("PUT", f"/traits/{trait}", expect=(201, 204))
        generation = self.call("GET", f"/resource_providers/{rp}", expect=200).json()["generation"]
        body = {"resource_provider_generation": generation, "traits": traits}
        self.call("PUT", f"/resource_providers/{rp}/traits", body, expect=200)

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
        and a host report to the scheduler."""
        rp = self._provider(name)
        inventories: dict[str, dict[str, Any]] = {
            "VCPU": {"total": vcpus, "allocation_ratio": cpu_ratio},
            "MEMORY_MB": {"total": ram},
        }
        if disk:  # no local disk: DISK_GB comes from a sharing provider
            inventories["DISK_GB"] = {"total": disk}
        self._inventories(rp, inventories)
        if traits:
            self._traits(rp, traits)
        host = Host(name, rp)
        for child, spec in (children or {}).items():
            child_rp = self._provider(f"{name}_{child}", rp)
            self._inventories(child_rp, spec["inventories"])
            if spec.get("traits"):
                self._traits(child_rp, spec["traits"])
            host.children[child] = child_rp
        body = {
            "compute_node_uuid": rp,
            "hypervisor_type": "QEMU",
            "supported_instances": [["x86_64", "kvm", "hvm"]],
            **(report or {}),
        }
        for scheduler in (self.http, *self.also):
            self.call("PUT", f"{SCHEDULER}/hosts/{name}", body, to=scheduler, expect=200)
        self.hosts[name] = host
        return host

    def shared_disk(self, name: str, disk: int, aggregate: str, *hosts: str) -> str:
        """A sharing provider of DISK_GB for ``hosts`` (placement aggregate ``aggregate``)."""
        rp = self._provider(name)
        self._inventories(rp, {"DISK_GB": {"total": disk}})
        self._traits(rp, ["MISC_SHARES_VIA_AGGREGATE"])
        for member in (rp, *(self.hosts[h].uuid for h in hosts)):
            generation = self.call("GET", f"/resource_providers/{member}", expect=200).json()[
                "generation"
            ]
            body = {"aggregates": [aggregate], "resource_provider_generation": generation}
            self.call("PUT", f"/resource_providers/{member}/aggregates", body, expect=200)
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
