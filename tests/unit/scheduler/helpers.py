"""A small in-memory cloud for scheduler tests: hosts, aggregates, instances, and what
placement would offer, scheduled through the public Pipeline / Cycle interfaces."""

from __future__ import annotations

import random
import uuid as uuidlib
from typing import Any

import numpy as np

from allotment.config import Settings, load_settings
from allotment.context import RequestContext
from allotment.errors import NoValidHost
from allotment.scheduler.cycle.driver import Cycle
from allotment.scheduler.pipeline import Pipeline
from allotment.scheduler.placement import Candidates
from allotment.scheduler.records import Aggregate, HostRecord, HostReport, InstanceInfo
from allotment.scheduler.request import parse_request_spec
from allotment.scheduler.snapshot import HostSnapshot

NOW = 1_700_000_000.0
FLAVOR = {"name": "m1.small", "vcpus": 1, "memory_mb": 512, "root_gb": 1}


def spec(**fields: Any) -> dict[str, Any]:
    """A request spec body with a default flavor; ``flavor`` entries are merged."""
    flavor = {**FLAVOR, **fields.pop("flavor", {})}
    return {"project_id": "p1", "user_id": "u1", "flavor": flavor, **fields}


class Cloud:
    def __init__(self, **sections: dict[str, Any]) -> None:
        self.sections = sections
        self.records: list[HostRecord] = []
        self.aggregates: list[Aggregate] = []
        self.instances: dict[str, dict[str, InstanceInfo]] = {}
        self.free: dict[str, tuple[float, float, float]] = {}

    def settings(self, **more: dict[str, Any]) -> Settings:
        merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in self.sections.items()}
        for key, values in more.items():
            merged.setdefault(key, {}).update(values)
        return load_settings(None, merged, environ={})

    def host(
        self,
        name: str,
        *,
        node: str | None = None,
        age: float = 0.0,
        ram: float = 16384,
        disk: float = 100,
        vcpus: float = 16,
        **report: Any,
    ) -> str:
        """Add a compute node; ``age`` is seconds since its heartbeat, ``ram`` (MB),
        ``disk`` (GB) and ``vcpus`` what placement reports free."""
        report.setdefault("compute_node_uuid", str(uuidlib.uuid4()))
        report.setdefault("supported_instances", [("x86_64", "kvm", "hvm")])
        parsed = HostReport.model_validate({"nodename": node or name, **report})
        self.records.append(HostRecord(name, node or name, parsed, NOW - age, NOW - age))
        self.free[parsed.compute_node_uuid] = (ram, disk * 1024, vcpus)
        return parsed.compute_node_uuid

    def aggregate(self, name: str, hosts: list[str], **metadata: str) -> str:
        uuid = str(uuidlib.uuid4())
        self.aggregates.append(Aggregate(uuid, name, metadata, frozenset(hosts)))
        return uuid

    def instance(self, host: str, uuid: str | None = None, **info: Any) -> str:
        parsed = InstanceInfo.model_validate({"uuid": uuid or str(uuidlib.uuid4()), **info})
        self.instances.setdefault(host, {})[parsed.uuid] = parsed
        return parsed.uuid

    def snapshot(self) -> HostSnapshot:
        return HostSnapshot.build(self.records, self.aggregates, self.instances)

    def candidates(self, uuids: list[str] | None = None) -> Candidates:
        chosen = uuids if uuids is not None else [r.uuid for r in self.records]
        free = [self.free.get(u, (16384.0, 102400.0, 16.0)) for u in chosen]
        return Candidates(
            chosen,
            np.array([f[0] for f in free], float),
            np.array([f[1] for f in free], float),
            np.array([f[2] for f in free], float),
        )

    def pipeline(
        self, filters: list[str] | None = None, weighers: list[str] | None = None
    ) -> Pipeline:
        fs: dict[str, Any] = {}
        if filters is not None:
            fs["enabled_filters"] = filters
        if weighers is not None:
            fs["weight_classes"] = weighers
        return Pipeline.from_settings(self.settings(filter_scheduler=fs))

    def cycle(
        self,
        body: dict[str, Any],
        *,
        filters: list[str] | None = None,
        weighers: list[str] | None = None,
        instances: list[str] | None = None,
        seed: int = 0,
    ) -> Cycle:
        pipeline = self.pipeline(filters, weighers)
        snap = self.snapshot()
        prepared = pipeline.prepare(RequestContext.internal(), parse_request_spec(body), snap)
        return pipeline.start(
            prepared, snap, self.candidates(), instances or [], now=NOW, rng=random.Random(seed)
        )

    def passing(self, body: dict[str, Any], *filters: str) -> set[str]:
        """Hosts that pass ``filters`` for the first instance (empty on NoValidHost)."""
        cycle = self.cycle(body, filters=list(filters), weighers=[])
        try:
            ranking = cycle.next_hosts()
        except NoValidHost:
            return set()
        return {c.host for c in ranking}

    def ranking(self, body: dict[str, Any], *weighers: str, **kw: Any) -> list[tuple[str, float]]:
        """(host, weight) best first for the first instance, with only ``weighers``."""
        cycle = self.cycle(body, filters=[], weighers=list(weighers), **kw)
        return [(c.host, round(c.weight, 6)) for c in cycle.next_hosts()]

    def place(
        self,
        body: dict[str, Any],
        count: int,
        *,
        filters: list[str] | None = None,
        weighers: list[str] | None = None,
        seed: int = 0,
    ) -> list[str]:
        """Place ``count`` instances like select_destinations (first host of each ranking
        always "claims"); returns the chosen host names."""
        uuids = [str(uuidlib.uuid4()) for _ in range(count)]
        cycle = self.cycle(body, filters=filters, weighers=weighers, instances=uuids, seed=seed)
        chosen = []
        for uuid in uuids:
            first = cycle.next_hosts(uuid).first
            cycle.consume(first.position, uuid)
            chosen.append(first.host)
        return chosen
