"""Prometheus metrics (prometheus-client), served at ``GET /metrics``.

What is counted, and where:

* every HTTP request by method, route *template* (``/resource_providers/{uuid}``, never
  the raw path) and status, with a latency histogram (``ObserveMiddleware`` in app.py);
* ``select_destinations`` outcomes and latency, each NoValidHost by the stage that emptied
  the list and its main reason, claim conflicts and the retries they cost (the manager);
* how far behind the change logs this process's capacity index and host cache may be;
  hosts up, down and disabled; and the free capacity per listed flavor and availability
  zone (``[metrics] capacity_flavors``), computed from the capacity index in one
  vectorized pass at scrape time.

With ``--workers N`` every worker counts in files under ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode) and a scrape, answered by whichever worker, sums
the counters and histograms of all of them. The process that forks the workers calls
``prepare_multiprocess`` first and ``worker_exited`` for each worker that ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from allotment.config import Settings
from allotment.health import lag_seconds

if TYPE_CHECKING:
    from allotment.placement.index.sync import CapacityIndex
    from allotment.scheduler.host_manager import HostManager

LOG = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Requests whose path matched no route are counted under this route label.
UNMATCHED = "unmatched"
# Host state is found disabled on the compute node's provider this way (Nova's trait).
DISABLED_TRAIT = "COMPUTE_STATUS_DISABLED"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def prepare_multiprocess(state_dir: Path) -> Path:
    """Before forking workers: a fresh, empty directory for the workers' metric files,
    named in ``PROMETHEUS_MULTIPROC_DIR`` (which the workers inherit). Directories left
    by supervisors that are gone are removed; this one is emptied if it exists."""
    base = Path(state_dir) / "metrics"
    base.mkdir(parents=True, exist_ok=True)
    for stale in base.glob("supervisor-*"):
        pid = stale.name.partition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    directory = base / f"supervisor-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    os.environ[MULTIPROC_ENV] = str(directory)
    # prometheus-client picks its value class when it is imported: pick again, so metrics
    # created from now on (in this process and in forked workers) write to the files.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return directory


def worker_exited(pid: int) -> None:
    """A worker ended: its live gauges stop counting (its counters stay in the sums)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The metric objects of one process, and the scrape."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        # Own registry: several Services in one process (tests) never collide.
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.http_requests = Counter(
            "allotment_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "allotment_http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer, by method and route.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.selections = Counter(
            "allotment_select_destinations",
            "select_destinations calls by outcome: selected, no_valid_host, conflict, "
            "invalid, unavailable, error.",
            ["outcome"],
            registry=registry,
        )
        self.selection_duration = Histogram(
            "allotment_select_destinations_duration_seconds",
            "select_destinations time by outcome (every front door: HTTP and Nova RPC).",
            ["outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.instances = Counter(
            "allotment_instances_scheduled",
            "Instances select_destinations placed and claimed.",
            registry=registry,
        )
        self.no_valid_host = Counter(
            "allotment_no_valid_host",
            "NoValidHost answers by the stage that left no host and its main reason "
            "(a filter's reason code, a placement constraint, a resource class run out).",
            ["stage", "reason"],
            registry=registry,
        )
        self.claim_conflicts = Counter(
            "allotment_claim_conflicts",
            "Claims placement refused: capacity (another scheduler took the room) or "
            "consumer (the instance already holds allocations).",
            ["kind"],
            registry=registry,
        )
        self.claim_retries = Counter(
            "allotment_claim_retries",
            "What conflicts cost: one_by_one (a batch claim conflicted and the request "
            "started again instance by instance), next_host (a claim moved to the next host).",
            ["mode"],
            registry=registry,
        )
        self.lag = Gauge(
            "allotment_change_log_lag_seconds",
            "How old this process's view may be: seconds since its capacity index "
            "(log=placement) or host cache (log=scheduler) last had applied the whole change "
            "log. With --workers: the worst live worker.",
            ["log"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.hosts = Gauge(
            "allotment_hosts",
            "Compute nodes in the host cache by state: up, down (not heard from within "
            "service_down_time), disabled.",
            ["state"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.capacity = Gauge(
            "allotment_capacity_instances",
            "How many more instances of each [metrics] capacity_flavors flavor fit, per "
            "availability zone, on hosts that are up and enabled (from the capacity index).",
            ["flavor", "az"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )

    # -- counting -------------------------------------------------------------------------

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def selected(self, outcome: str, seconds: float, instances: int = 0) -> None:
        self.selections.labels(outcome).inc()
        self.selection_duration.labels(outcome).observe(seconds)
        if instances:
            self.instances.inc(instances)

    def refused(self, explanation: Mapping[str, Any]) -> None:
        """One NoValidHost, by the stage that emptied the list and its main reason."""
        emptied = explanation.get("emptied_by") or {}
        stage = str(emptied.get("stage") or "none")
        blocker = (explanation.get("tally") or {}).get("blocker")
        self.no_valid_host.labels(stage, str(blocker or stage)).inc()

    def conflict(self, kind: str) -> None:
        self.claim_conflicts.labels(kind).inc()

    def retry(self, mode: str) -> None:
        self.claim_retries.labels(mode).inc()

    # -- state, at scrape time and in the background rounds --------------------------------

    def record_lag(self, index: CapacityIndex | None, hosts: HostManager | None) -> None:
        now = time.time()
        for name, part in (("placement", index), ("scheduler", hosts)):
            if part is not None:
                self.lag.labels(name).set(lag_seconds(part.caught_up_at, now))

    def record_state(self, index: CapacityIndex | None, hosts: HostManager | None) -> None:
        """Hosts by state and capacity per flavor and zone, from this process's views
        (every process's are the same within the sync delay)."""
        self.record_lag(index, hosts)
        if hosts is None:
            return
        settings = self.settings
        snapshot = hosts.snapshot()
        down_time = settings.scheduler.service_down_time if settings else 60.0
        up = snapshot.up(hosts.clock(), down_time)
        disabled = snapshot.disabled
        self.hosts.labels("disabled").set(int(np.count_nonzero(disabled)))
        self.hosts.labels("down").set(int(np.count_nonzero(~disabled & ~up)))
        self.hosts.labels("up").set(int(np.count_nonzero(~disabled & up)))
        flavors = settings.metrics.capacity_flavors if settings else []
        if index is None or not flavors:
            return
        uuids, counts = index.instances_that_fit(
            [f.amounts() for f in flavors], excluded_trait=DISABLED_TRAIT
        )
        rows = snapshot.rows_for(uuids)
        known = rows >= 0
        usable = np.zeros(len(rows), bool)
        usable[known] = up[rows[known]] & ~disabled[rows[known]]
        default = settings.scheduler.default_availability_zone if settings else "nova"
        # One zone per distinct aggregate set, not per host.
        zone_of_set = [
            min(snapshot.aggregate_values(code, "availability_zone") or {default})
            for code in range(len(snapshot.aggregate_sets))
        ]
        zones = sorted(set(zone_of_set) | {default})
        zone_index = {z: i for i, z in enumerate(zones)}
        set_zone = np.array([zone_index[z] for z in zone_of_set], np.int64)
        host_zone = np.full(len(rows), -1, np.int64)
        if len(set_zone):
            host_zone[known] = set_zone[snapshot.aggregate_set[rows[known]]]
        take = usable & (host_zone >= 0)
        for f, flavor in enumerate(flavors):
            per_zone = np.bincount(
                host_zone[take], weights=counts[f][take], minlength=len(zones)
            ).astype(np.int64)
            for z, zone in enumerate(zones):
                self.capacity.labels(flavor.name, zone).set(int(per_zone[z]))

    # -- the scrape -----------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text exposition format: this process's registry, or with workers the sum
        over every worker's files."""
        directory = multiprocess_dir()
        if directory is None:
            return bytes(generate_latest(self.registry))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))


CONTENT_TYPE = CONTENT_TYPE_LATEST
