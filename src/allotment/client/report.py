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
from typing import Any, Protocol

import httpx

from allotment import errors
from allotment.client.http import error_code, error_detail

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


class Transport(Protocol):
    """What ReportClient sends its requests through: ``HttpTransport`` (token, microversion,
    retries) or ``ClientTransport`` over any ``httpx.Client`` (tests, in-process apps)."""

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        microversion: str | None = None,
    ) -> httpx.Response: ...


class ReportClient:
    def __init__(
        self,
        placement: Transport,
        scheduler: Transport | None = None,
        *,
        conflict_retries: int = 5,
    ) -> None:
        self.placement = placement
        self.scheduler = scheduler
        self.conflict_retries = conflict_retries
        self._last_report: dict[str, dict[str, Any]] = {}

    # -- provider tree --------------------------------------------------------------------

    def publish(self, tree: Sequence[ProviderSpec]) -> None:
        """Make Placement hold exactly ``tree``: parents are created before children, and
        providers that Placement holds under one of the tree's roots but the tree no
        longer has (a removed GPU, a NUMA cell gone) are deleted, children first."""
        by_uuid = {spec.uuid: spec for spec in tree}
        generations: dict[str, int | None] = {}
        for spec in _parents_first(tree, by_uuid):
            generations[spec.uuid] = self._ensure_provider(spec)
        for spec in tree:
            if spec.parent_uuid is None and generations[spec.uuid] is not None:
                self._prune(spec.uuid, by_uuid)
        for spec in tree:
            self._ensure_custom_classes(spec.inventories)
            self._ensure_custom_traits(spec.traits)
            generation = generations[spec.uuid]
            # A provider created just now has no inventories, traits or aggregates: an
            # empty set needs no write.
            fresh = generation is None
            for what, wanted in (
                ("inventories", spec.inventories),
                ("traits", spec.traits),
                ("aggregates", spec.aggregates),
            ):
                if fresh and not wanted:
                    continue
                generation = self._with_generation(spec, what, generation or 0)

    def delete_provider(self, uuid: str) -> None:
        response = self.placement.request(
            "DELETE", f"/resource_providers/{uuid}", microversion=MICROVERSION
        )
        if response.status_code not in (204, 404):
            raise _failure("delete provider", uuid, response)

    def _ensure_provider(self, spec: ProviderSpec) -> int | None:
        """Create or correct the provider; its generation, or None when it was just created
        (generation 0, nothing on it)."""
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
            return None
        if current.status_code != 200:
            raise _failure("read provider", spec.uuid, current)
        seen = current.json()
        if seen["name"] != spec.name or seen["parent_provider_uuid"] != spec.parent_uuid:
            body = {"name": spec.name, "parent_provider_uuid": spec.parent_uuid}
            updated = self.placement.request("PUT", path, json=body, microversion=MICROVERSION)
            if updated.status_code != 200:
                raise _failure("update provider", spec.uuid, updated)
            return int(updated.json()["generation"])
        return int(seen["generation"])

    def _prune(self, root: str, wanted: dict[str, ProviderSpec]) -> None:
        response = self.placement.request(
            "GET", "/resource_providers", params={"in_tree": root}, microversion=MICROVERSION
        )
        if response.status_code != 200:
            raise _failure("list the tree of", root, response)
        held = {rp["uuid"]: rp for rp in response.json()["resource_providers"]}

        def depth(uuid: str) -> int:
            level, parent = 0, held[uuid]["parent_provider_uuid"]
            while parent in held and level <= len(held):
                level, parent = level + 1, held[parent]["parent_provider_uuid"]
            return level

        for uuid in sorted(set(held) - set(wanted), key=depth, reverse=True):
            LOG.info(
                "provider %s (%s) left the tree of %s: deleting it", uuid, held[uuid]["name"], root
            )
            self.delete_provider(uuid)

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

    def _with_generation(self, spec: ProviderSpec, what: str, generation: int) -> int:
        """Write ``what`` of ``spec`` guarded by ``generation``; after a generation conflict
        (another writer changed the provider since we read it) read it again and retry.
        Returns the provider's new generation."""
        for _ in range(self.conflict_retries + 1):
            response = self.placement.request(
                "PUT",
                f"/resource_providers/{spec.uuid}/{what}",
                json={"resource_provider_generation": generation, what: _body(spec, what)},
                microversion=MICROVERSION,
            )
            if response.status_code == 200:
                return int(response.json()["resource_provider_generation"])
            if response.status_code == 409 and error_code(response) == CONCURRENT_UPDATE:
                LOG.debug("generation conflict setting %s of %s; retrying", what, spec.uuid)
                generation = self._generation(spec.uuid)
                continue
            raise _failure(f"set {what} of", spec.uuid, response)
        raise errors.ConcurrentUpdate(
            f"could not set {what} of provider {spec.uuid}: it kept changing under us"
        )

    def _generation(self, uuid: str) -> int:
        response = self.placement.request(
            "GET", f"/resource_providers/{uuid}", microversion=MICROVERSION
        )
        if response.status_code != 200:
            raise _failure("read provider", uuid, response)
        return int(response.json()["generation"])

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


def _body(spec: ProviderSpec, what: str) -> Any:
    if what == "inventories":
        return spec.inventories
    return sorted(spec.traits if what == "traits" else spec.aggregates)


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


def _failure(action: str, subject: str, response: httpx.Response) -> errors.AllotmentError:
    return errors.AllotmentError(
        f"could not {action} {subject}: HTTP {response.status_code} {error_detail(response)}"
    )
