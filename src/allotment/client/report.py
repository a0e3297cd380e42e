"""ReportClient: what a compute host runs to publish itself.

It keeps Placement's view of the host's provider tree (root compute node, NUMA cells, GPUs,
PCI devices...) equal to the host's own: providers, inventories, traits and aggregates,
handling provider generations the way Nova's report client does (re-read and retry on a
generation conflict). It also sends the host report to the scheduler, which doubles as the
heartbeat.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from allotment import errors
from allotment.client.http import HttpTransport, error_code, error_detail

LOG = logging.getLogger(__name__)
MICROVERSION = "1.39"
CONCURRENT_UPDATE = errors.CONCURRENT_UPDATE


@dataclass
class ProviderSpec:
    """One provider of a host's tree as the host sees it."""

    name: str
    uuid: str
    parent_uuid: str | None = None
    # resource class -> inventory fields (total, reserved, min_unit, max_unit, step_size,
    # allocation_ratio); omitted fields take Placement's defaults.
    inventories: dict[str, dict[str, Any]] = field(default_factory=dict)
    traits: set[str] = field(default_factory=set)
    aggregates: set[str] = field(default_factory=set)


class ReportClient:
    def __init__(
        self,
        placement: HttpTransport,
        scheduler: HttpTransport | None = None,
        *,
        conflict_retries: int = 5,
    ) -> None:
        self.placement = placement
        self.scheduler = scheduler
        self.conflict_retries = conflict_retries
        self._last_report: dict[str, dict[str, Any]] = {}

    # -- provider tree --------------------------------------------------------------------

    def publish(self, tree: Sequence[ProviderSpec]) -> None:
        """Make Placement hold exactly ``tree`` (parents are created before children)."""
        by_uuid = {spec.uuid: spec for spec in tree}
        for spec in _parents_first(tree, by_uuid):
            self._ensure_provider(spec)
        for spec in tree:
            self._ensure_custom_classes(spec.inventories)
            self._ensure_custom_traits(spec.traits)
            self._with_generation(spec.uuid, "inventories", self._put_inventories, spec)
            self._with_generation(spec.uuid, "traits", self._put_traits, spec)
            self._with_generation(spec.uuid, "aggregates", self._put_aggregates, spec)

    def delete_provider(self, uuid: str) -> None:
        response = self.placement.request(
            "DELETE", f"/resource_providers/{uuid}", microversion=MICROVERSION
        )
        if response.status_code not in (204, 404):
            raise _failure("delete provider", uuid, response)

    def _ensure_provider(self, spec: ProviderSpec) -> None:
        path = f"/resource_providers/{spec.uuid}"
        current = self.placement.request("GET", path, microversion=MICROVERSION)
        if current.status_code == 404:
            body: dict[str, Any] = {"name": spec.name, "uuid": spec.uuid}
            if spec.parent_uuid:
                body["parent_provider_uuid"] = spec.parent_uuid
            created = self.placement.request(
                "POST", "/resource_providers", json=body, microversion=MICROVERSION
            )
            if created.status_code != 200:
                raise _failure("create provider", spec.uuid, created)
            return
        if current.status_code != 200:
            raise _failure("read provider", spec.uuid, current)
        seen = current.json()
        if seen["name"] != spec.name or seen["parent_provider_uuid"] != spec.parent_uuid:
            body = {"name": spec.name, "parent_provider_uuid": spec.parent_uuid}
            updated = self.placement.request("PUT", path, json=body, microversion=MICROVERSION)
            if updated.status_code != 200:
                raise _failure("update provider", spec.uuid, updated)

    def _ensure_custom_classes(self, inventories: dict[str, dict[str, Any]]) -> None:
        for name in inventories:
            if name.startswith("CUSTOM_"):
                response = self.placement.request(
                    "PUT", f"/resource_classes/{name}", microversion=MICROVERSION
                )
                if response.status_code not in (201, 204):
                    raise _failure("create resource class", name, response)

    def _ensure_custom_traits(self, traits: set[str]) -> None:
        for name in sorted(traits):
            if name.startswith("CUSTOM_"):
                response = self.placement.request(
                    "PUT", f"/traits/{name}", microversion=MICROVERSION
                )
                if response.status_code not in (201, 204):
                    raise _failure("create trait", name, response)

    def _with_generation(self, uuid: str, what: str, put: Any, spec: ProviderSpec) -> None:
        """Run a generation-guarded update, re-reading the generation after a conflict."""
        for _ in range(self.conflict_retries + 1):
            generation = self._generation(uuid)
            response = put(spec, generation)
            if response.status_code == 200:
                return
            if response.status_code == 409 and error_code(response) == CONCURRENT_UPDATE:
                LOG.debug("generation conflict setting %s of %s; retrying", what, uuid)
                continue
            raise _failure(f"set {what} of", uuid, response)
        raise errors.ConcurrentUpdate(
            f"could not set {what} of provider {uuid}: it kept changing under us"
        )

    def _generation(self, uuid: str) -> int:
        response = self.placement.request(
            "GET", f"/resource_providers/{uuid}", microversion=MICROVERSION
        )
        if response.status_code != 200:
            raise _failure("read provider", uuid, response)
        return int(response.json()["generation"])

    def _put_inventories(self, spec: ProviderSpec, generation: int) -> Any:
        body = {"resource_provider_generation": generation, "inventories": spec.inventories}
        return self.placement.request(
            "PUT",
            f"/resource_providers/{spec.uuid}/inventories",
            json=body,
            microversion=MICROVERSION,
        )

    def _put_traits(self, spec: ProviderSpec, generation: int) -> Any:
        body = {"resource_provider_generation": generation, "traits": sorted(spec.traits)}
        return self.placement.request(
            "PUT", f"/resource_providers/{spec.uuid}/traits", json=body, microversion=MICROVERSION
        )

    def _put_aggregates(self, spec: ProviderSpec, generation: int) -> Any:
        body = {"resource_provider_generation": generation, "aggregates": sorted(spec.aggregates)}
        return self.placement.request(
            "PUT",
            f"/resource_providers/{spec.uuid}/aggregates",
            json=body,
            microversion=MICROVERSION,
        )

    # -- scheduler host report ------------------------------------------------------------

    def report_host(self, host: str, report: dict[str, Any]) -> None:
        """Send the host report (capabilities, NUMA, PCI pools, metrics...); also a heartbeat."""
        if self.scheduler is None:
            raise errors.ConfigError("this ReportClient has no scheduler endpoint")
        response = self.scheduler.request("PUT", f"/hosts/{host}", json=report)
        if response.status_code not in (200, 201, 204):
            raise _failure("report host", host, response)
        self._last_report[host] = report

    def heartbeat(self, host: str) -> None:
        """Re-send the last report for ``host`` so the scheduler knows it is alive."""
        report = self._last_report.get(host)
        if report is None:
            raise errors.ConfigError(f"no report was sent for host {host} yet")
        self.report_host(host, report)


def _parents_first(
    tree: Sequence[ProviderSpec], by_uuid: dict[str, ProviderSpec]
) -> list[ProviderSpec]:
    def depth(spec: ProviderSpec) -> int:
        level = 0
        parent = spec.parent_uuid
        while parent in by_uuid and level <= len(by_uuid):
            level += 1
            parent = by_uuid[parent].parent_uuid
        return level

    return sorted(tree, key=depth)


def _failure(action: str, subject: str, response: Any) -> errors.AllotmentError:
    return errors.AllotmentError(
        f"could not {action} {subject}: HTTP {response.status_code} {error_detail(response)}"
    )
