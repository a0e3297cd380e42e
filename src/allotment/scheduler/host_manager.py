"""The HostManager: the scheduler's cache of host state, fed by the compute hosts,
persisted in SQL, served to scheduling requests as immutable snapshots.

Writes (host reports, aggregates, instance info) are validated, written to SQL in one
transaction, then applied to the in-memory records; the next ``snapshot()`` derives a new
snapshot from the rows that changed. A report that differs from the stored one only in
its heartbeat or in fast-moving counters (``io_ops``, ``metrics``) updates memory at once
and reaches SQL with the next periodic flush (and at shutdown), so thousands of hosts
reporting every few seconds do not cost a transaction each; a crash loses at most one
flush interval of those values, which the next report restores.

``reset`` (the admin API, or SIGHUP as the app wires it) rebuilds everything from SQL
aside and swaps it in with one assignment: a request that took the old snapshot finishes
on it, the next one gets the new one, nobody sees a mixture. Writers wait for a reset;
readers never do.

Every method takes the caller's RequestContext: it is checked against the
``scheduler:...`` policy rules, its request id is on every log line, and it is never
dropped. The sync round (``sync``), the periodic round (``periodic``) and the final flush
(``close``) are run by the app (``allotment.app.HostCacheTasks``); this class runs no
thread of its own.

Several processes (or workers) on one database share one truth: every write above also
appends a ``scheduler_changes`` row, and ``catch_up`` re-reads the rows the changes of
other processes name, the way the capacity index follows the ledger's change log. A host
is up if any process recorded a fresh enough heartbeat: flushes never lower a stored
heartbeat, and catching up keeps the fresher of the stored and the unflushed one. Instance
uuids are logged at debug level only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from allotment import errors, log
from allotment.auth import policy
from allotment.config import Settings, parse_weight_setting
from allotment.context import RequestContext
from allotment.db.database import Database, utcnow
from allotment.scheduler import store
from allotment.scheduler.records import (
    Aggregate,
    AggregateBody,
    HostRecord,
    HostReport,
    InstanceInfo,
)
from allotment.scheduler.snapshot import HostSnapshot

LOG = logging.getLogger(__name__)
# Change rows read per catch-up query.
_BATCH = 10000
# Report fields written behind (with the heartbeat flush) rather than in the request.
VOLATILE_FIELDS = frozenset({"io_ops", "metrics"})


class AggregateMirror(Protocol):
    """Keeps placement aggregates in step with host aggregates (Nova's nova-api does this
    when hosts join or leave an aggregate)."""

    def update_members(
        self,
        ctx: RequestContext,
        aggregate_uuid: str,
        add: Collection[str],
        remove: Collection[str],
    ) -> None:
        """Make compute-node providers ``add`` members of the placement aggregate and
        ``remove`` not members."""


@dataclass(frozen=True, slots=True)
class HostStatus:
    """One compute node as ``GET /scheduler/v1/hosts`` shows it."""

    host: str
    nodename: str
    compute_node_uuid: str
    up: bool
    disabled: bool
    disabled_reason: str | None
    seconds_since_heartbeat: float
    aggregates: list[str]
    instances: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "nodename": self.nodename,
            "compute_node_uuid": self.compute_node_uuid,
            "up": self.up,
            "disabled": self.disabled,
            "disabled_reason": self.disabled_reason,
            "seconds_since_heartbeat": round(self.seconds_since_heartbeat, 1),
            "aggregates": self.aggregates,
            "instances": self.instances,
        }


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What ``sync_instance_info`` found: whether the host and the cache agreed, and what
    it changed to make them agree."""

    in_sync: bool
    added: list[str]
    removed: list[str]


@dataclass
class _Records:
    """The authoritative in-memory copy of the cache (what SQL holds, plus heartbeats not
    yet flushed)."""

    hosts: dict[str, HostRecord] = field(default_factory=dict)
    aggregates: dict[str, Aggregate] = field(default_factory=dict)
    instances: dict[str, dict[str, InstanceInfo]] = field(default_factory=dict)
    # The position in scheduler_changes these records were read at, and when.
    seq: int = 0
    read_at: float | None = None


class HostManager:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        mirror: AggregateMirror | None = None,
        providers: Callable[[], Iterable[tuple[str, str]]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        # Root resource providers (uuid, name) in placement, for the discovery round.
        self.providers = providers
        # Root providers with no host report, as of the last discovery round.
        self.unreported: list[tuple[str, str]] = []
        self.settings = settings
        self.mirror = mirror
        self.clock = clock
        self._metric_names = frozenset(
            name for name, _ in parse_weight_setting(settings.metrics.weight_setting)
        )
        # Held by writers and by reset (which must not interleave with a write).
        self._write_lock = threading.Lock()
        # Held briefly to publish a new snapshot and to hand pending changes over.
        self._lock = threading.Lock()
        self._records = _Records()
        self._snapshot = HostSnapshot.empty()
        self._generation = 0
        self._dirty = False
        self._rebuild = False
        self._changed_hosts: set[str] = set()
        self._changed_instances: set[str] = set()
        # Nodes with a heartbeat not yet in SQL, and whether volatile report fields changed.
        self._unflushed: dict[str, tuple[HostRecord, bool]] = {}
        # The change-log position applied, and this process's changes after it (applied
        # when written, so catching up skips them).
        self._seq = 0
        self._own: set[int] = set()
        # When (time.time()) this process last had applied the whole change log; None
        # until loaded. /readyz and the lag metric read it.
        self.caught_up_at: float | None = None

    # -- reading ------------------------------------------------------------------------

    def load(self) -> None:
        """Read the whole cache from SQL (start-up)."""
        records = self._read()
        with self._lock:
            self._install(records)

    def _read(self) -> _Records:
        started = time.time()
        with self.db.read() as conn:
            seq = store.latest_change(conn)
            hosts, aggregates, instances = store.load(conn)
        return _Records(
            hosts={r.uuid: r for r in hosts},
            aggregates={a.uuid: a for a in aggregates},
            instances=instances,
            seq=seq,
            read_at=started,
        )

    def _install(self, records: _Records) -> None:
        self._records = records
        self._seq = records.seq
        self.caught_up_at = records.read_at
        self._own.clear()
        self._generation += 1
        self._snapshot = self._build(records)
        self._changed_hosts.clear()
        self._changed_instances.clear()
        self._rebuild = self._dirty = False

    def _build(self, records: _Records) -> HostSnapshot:
        return HostSnapshot.build(
            records.hosts.values(),
            records.aggregates.values(),
            records.instances,
            metric_names=self._metric_names,
            generation=self._generation,
        )

    def snapshot(self) -> HostSnapshot:
        """The current state of every host, immutable; take it once per request."""
        if not self._dirty:
            return self._snapshot
        with self._lock:
            # Another thread may have published while this one waited for the lock.
            if self._dirty:
                self._publish()
            return self._snapshot

    def _publish(self) -> None:
        self._generation += 1
        records = self._records
        if self._rebuild:
            self._snapshot = self._build(records)
        else:
            snap = self._snapshot
            rows = {snap.row_of_uuid[u]: records.hosts[u] for u in self._changed_hosts}
            infos = {h: records.instances.get(h, {}) for h in self._changed_instances}
            self._snapshot = snap.derive(rows, infos, generation=self._generation)
        self._changed_hosts.clear()
        self._changed_instances.clear()
        self._rebuild = self._dirty = False

    def records(
        self,
    ) -> tuple[dict[str, HostRecord], dict[str, Aggregate], dict[str, dict[str, InstanceInfo]]]:
        """Copies of the current records (nodes by uuid, aggregates by uuid, instances by
        host), for a feeder that writes only what differs."""
        with self._lock:
            records = self._records
            return (
                dict(records.hosts),
                dict(records.aggregates),
                {host: dict(held) for host, held in records.instances.items()},
            )

    def list_hosts(self, ctx: RequestContext) -> list[HostStatus]:
        policy.authorize(ctx, "scheduler:hosts:list")
        snap = self.snapshot()
        return self._statuses(snap, range(len(snap)))

    def _statuses(self, snap: HostSnapshot, rows: Iterable[int]) -> list[HostStatus]:
        now = self.clock()
        up = snap.up(now, self.settings.scheduler.service_down_time)
        return [
            HostStatus(
                host=snap.hosts[row],
                nodename=snap.nodenames[row],
                compute_node_uuid=snap.uuids[row],
                up=bool(up[row]),
                disabled=bool(snap.disabled[row]),
                disabled_reason=snap.records[row].report.disabled_reason,
                seconds_since_heartbeat=now - float(snap.heartbeat[row]),
                aggregates=[a.uuid for a in snap.aggregates_of(int(snap.aggregate_set[row]))],
                instances=int(snap.num_instances[row]),
            )
            for row in rows
        ]

    def show_host(
        self, ctx: RequestContext, host: str
    ) -> tuple[list[tuple[HostStatus, HostRecord]], list[str]]:
        """``GET /hosts/{host}``: each node of ``host`` with its status and last report,
        and the uuids of the instances recorded on it; NotFound when it never reported.
        Only the host's own rows are looked at, not every host's status."""
        policy.authorize(ctx, "scheduler:hosts:list")
        snap = self.snapshot()
        found = self._statuses(snap, snap.node_rows(host, None))
        if not found:
            raise errors.NotFound(f"No host named {host!r} has reported to the scheduler.")
        with self._lock:
            records = dict(self._records.hosts)
            instances = sorted(self._records.instances.get(host, {}))
        nodes = [(s, records[s.compute_node_uuid]) for s in found if s.compute_node_uuid in records]
        return nodes, instances

    # -- writing ------------------------------------------------------------------------

    def _apply(
        self,
        change: Callable[[_Records], object],
        *,
        hosts: Iterable[str] = (),
        instances: Iterable[str] = (),
        rebuild: bool = False,
        seq: int = 0,
    ) -> None:
        """Apply a committed change to the in-memory records and note what the next
        snapshot must refresh (under the publishing lock, so a snapshot build never sees
        the records mid-change); ``seq``, the change's number, need not be re-read."""
        with self._lock:
            change(self._records)
            if seq > self._seq:
                self._own.add(seq)
            self._changed_hosts.update(hosts)
            self._changed_instances.update(instances)
            self._rebuild |= rebuild
            self._dirty = True

    def report_host(
        self,
        ctx: RequestContext,
        host: str,
        report: HostReport,
        *,
        heartbeat: float | None = None,
    ) -> HostRecord:
        """``PUT /hosts/{host}``: a compute node's state; also its heartbeat (now, or
        ``heartbeat``: when its service last reported, as Nova's database says)."""
        policy.authorize(ctx, "scheduler:hosts:update")
        if not host or len(host) > 255:
            raise errors.InvalidInput("The host name must be 1 to 255 characters long.")
        nodename = report.nodename or host
        with log.request_context(ctx), self._write_lock:
            now = self.clock() if heartbeat is None else heartbeat
            old = self._records.hosts.get(report.compute_node_uuid)
            record = HostRecord(host, nodename, report, heartbeat=now, updated_at=now)
            if old is not None and _same_except_volatile(old, record):
                kept = replace(record, updated_at=old.updated_at)
                volatile = any(
                    getattr(old.report, name) != getattr(report, name) for name in VOLATILE_FIELDS
                )

                def beat(records: _Records) -> None:
                    records.hosts[kept.uuid] = kept
                    was_volatile = self._unflushed.get(kept.uuid, (kept, False))[1]
                    self._unflushed[kept.uuid] = (kept, was_volatile or volatile)

                self._apply(beat, hosts=[kept.uuid])
                return kept

            def write(conn: Connection) -> int:
                gone = store.save_host(conn, record, utcnow())
                return store.record_change(conn, store.SCOPE_HOSTS, [record.uuid, *gone])

            seq = self.db.transaction(write)
            replaced = [
                u
                for u, r in self._records.hosts.items()
                if (r.host, r.nodename) == (host, nodename) and u != record.uuid
            ]
            moved = old is not None and (old.host, old.nodename) != (host, nodename)

            def save(records: _Records) -> None:
                for uuid in replaced:
                    del records.hosts[uuid]
                records.hosts[record.uuid] = record
                self._unflushed.pop(record.uuid, None)

            self._apply(
                save, hosts=[record.uuid], rebuild=old is None or bool(replaced) or moved, seq=seq
            )
            if old is None:
                LOG.info("host %s node %s reported for the first time", host, nodename)
                self._mirror_new_node(ctx, host, record.uuid)
            elif old.report.disabled != report.disabled:
                LOG.info(
                    "host %s node %s is now %s%s",
                    host,
                    nodename,
                    "disabled" if report.disabled else "enabled",
                    f" ({report.disabled_reason})" if report.disabled_reason else "",
                )
            return record

    def delete_host(self, ctx: RequestContext, host: str) -> list[str]:
        """``DELETE /hosts/{host}``: forget the host (every node it reported, their
        heartbeats, the instances recorded on it), as ``nova-manage`` / ``openstack compute
        service delete`` does for a host taken out of service. Aggregates keep naming it
        (Nova's hold host names too); placement's providers are placement's business.
        Returns the node uuids forgotten; NotFound when the host never reported."""
        policy.authorize(ctx, "scheduler:hosts:delete")
        with log.request_context(ctx), self._write_lock:
            nodes = sorted(u for u, r in self._records.hosts.items() if r.host == host)
            held = sorted(self._records.instances.get(host, {}))
            if not nodes and not held:
                raise errors.NotFound(f"No host named {host!r} has reported to the scheduler.")

            def write(conn: Connection) -> list[int]:
                store.delete_hosts(conn, nodes)
                store.delete_instances(conn, held)
                return [
                    store.record_change(conn, store.SCOPE_HOSTS, nodes),
                    store.record_change(conn, store.SCOPE_INSTANCES, [host]),
                ]

            seqs = self.db.transaction(write)

            def forget(records: _Records) -> None:
                for uuid in nodes:
                    del records.hosts[uuid]
                    self._unflushed.pop(uuid, None)
                records.instances.pop(host, None)

            self._apply(forget, instances=[host], rebuild=True, seq=seqs[0])
            with self._lock:
                self._own.update(s for s in seqs if s > self._seq)
            LOG.info(
                "host %s deleted from the host cache (%d node(s), %d instance(s))",
                host,
                len(nodes),
                len(held),
            )
            return nodes

    def remove_hosts(self, ctx: RequestContext, uuids: Collection[str]) -> int:
        """Forget these compute nodes (deleted in Nova's database); returns how many were
        known."""
        policy.authorize(ctx, "scheduler:hosts:update")
        with log.request_context(ctx), self._write_lock:
            known = sorted(set(uuids) & self._records.hosts.keys())
            if not known:
                return 0

            def write(conn: Connection) -> int:
                store.delete_hosts(conn, known)
                return store.record_change(conn, store.SCOPE_HOSTS, known)

            seq = self.db.transaction(write)

            def forget(records: _Records) -> None:
                for uuid in known:
                    del records.hosts[uuid]
                    self._unflushed.pop(uuid, None)

            self._apply(forget, rebuild=True, seq=seq)
            LOG.info("%d compute node(s) forgotten: %s", len(known), ", ".join(known[:20]))
            return len(known)

    def update_aggregate(self, ctx: RequestContext, uuid: str, body: AggregateBody) -> Aggregate:
        """``PUT /aggregates/{uuid}`` (Nova's update_aggregates); placement membership of
        the hosts' compute nodes follows."""
        policy.authorize(ctx, "scheduler:aggregates:update")
        aggregate = Aggregate(uuid, body.name, dict(body.metadata), frozenset(body.hosts))
        with log.request_context(ctx), self._write_lock:
            old = self._records.aggregates.get(uuid)

            def write(conn: Connection) -> int:
                store.save_aggregate(conn, aggregate, utcnow())
                return store.record_change(conn, store.SCOPE_AGGREGATES, [uuid])

            seq = self.db.transaction(write)
            self._apply(lambda r: r.aggregates.__setitem__(uuid, aggregate), rebuild=True, seq=seq)
            LOG.info("aggregate %s (%s) now has %d hosts", uuid, body.name, len(aggregate.hosts))
            before = old.hosts if old else frozenset()
            self._mirror(ctx, uuid, aggregate.hosts - before, before - aggregate.hosts)
            return aggregate

    def delete_aggregate(self, ctx: RequestContext, uuid: str) -> None:
        """``DELETE /aggregates/{uuid}`` (Nova's delete_aggregate)."""
        policy.authorize(ctx, "scheduler:aggregates:delete")
        with log.request_context(ctx), self._write_lock:
            old = self._records.aggregates.get(uuid)
            if old is None:
                raise errors.NotFound(f"No aggregate with uuid {uuid} is known to the scheduler.")

            def write(conn: Connection) -> int:
                store.delete_aggregate(conn, uuid)
                return store.record_change(conn, store.SCOPE_AGGREGATES, [uuid])

            seq = self.db.transaction(write)
            self._apply(lambda r: r.aggregates.__delitem__(uuid), rebuild=True, seq=seq)
            LOG.info("aggregate %s (%s) deleted", uuid, old.name)
            self._mirror(ctx, uuid, frozenset(), old.hosts)

    def update_instance_info(
        self,
        ctx: RequestContext,
        host: str,
        infos: Sequence[InstanceInfo],
        *,
        from_database: bool = False,
    ) -> None:
        """``PUT /hosts/{host}/instances``: these instances are on ``host`` (added or
        updated; an instance last seen on another host has moved). ``from_database``:
        read from Nova's database, kept whatever ``track_instance_changes`` says (that
        option is about the computes' casts)."""
        policy.authorize(ctx, "scheduler:instances:update")
        if not from_database and not self._tracking():
            return
        with log.request_context(ctx), self._write_lock:

            def write(conn: Connection) -> int:
                others = store.save_instances(conn, host, infos, utcnow())
                return store.record_change(conn, store.SCOPE_INSTANCES, [host, *others])

            seq = self.db.transaction(write)
            moved_from = self._move_instances(host, infos)
            self._apply(
                lambda r: _place(r, host, infos, moved_from),
                instances={host, *moved_from},
                seq=seq,
            )
            LOG.info("host %s: %d instance(s) updated", host, len(infos))
            LOG.debug("host %s: instances %s updated", host, [i.uuid for i in infos])

    def delete_instance_info(self, ctx: RequestContext, host: str, instance_uuid: str) -> None:
        """``DELETE /hosts/{host}/instances/{uuid}``: the instance is gone from ``host``."""
        self.delete_instances_info(ctx, {host: [instance_uuid]})

    def delete_instances_info(self, ctx: RequestContext, gone: Mapping[str, Sequence[str]]) -> int:
        """Instances gone from their hosts (host -> uuids), in one transaction: many
        ``delete_instance_info`` at once (the simulator's departures). Instances the
        cache does not know on that host are skipped; returns how many it knew."""
        policy.authorize(ctx, "scheduler:instances:delete")
        if not self._tracking():
            return 0
        with log.request_context(ctx), self._write_lock:
            known: dict[str, list[str]] = {}
            for host, uuids in gone.items():
                held = self._records.instances.get(host, {})
                for uuid in uuids:
                    if uuid in held:
                        known.setdefault(host, []).append(uuid)
                    else:
                        LOG.debug("host %s: instance %s to delete was not known", host, uuid)
            if not known:
                return 0

            def write(conn: Connection) -> int:
                store.delete_instances(conn, [u for uuids in known.values() for u in uuids])
                return store.record_change(conn, store.SCOPE_INSTANCES, sorted(known))

            def forget(records: _Records) -> None:
                for host, uuids in known.items():
                    for uuid in uuids:
                        records.instances[host].pop(uuid)

            seq = self.db.transaction(write)
            self._apply(forget, instances=list(known), seq=seq)
            for host, uuids in known.items():
                LOG.info("host %s: %d instance(s) deleted", host, len(uuids))
                LOG.debug("host %s: instances %s deleted", host, uuids)
            return sum(len(uuids) for uuids in known.values())

    def sync_instance_info(
        self,
        ctx: RequestContext,
        host: str,
        uuids: Sequence[str],
        *,
        from_database: bool = False,
    ) -> SyncResult:
        """``POST /hosts/{host}/instances/sync``: the complete list of instances on
        ``host``; the cache is corrected to match it."""
        policy.authorize(ctx, "scheduler:instances:sync")
        if not from_database and not self._tracking():
            return SyncResult(True, [], [])
        reported = {InstanceInfo(uuid=u).uuid for u in uuids}
        with log.request_context(ctx), self._write_lock:
            held = self._records.instances.get(host, {})
            added = sorted(reported - held.keys())
            removed = sorted(held.keys() - reported)
            if not added and not removed:
                LOG.debug("host %s: instance list in sync", host)
                return SyncResult(True, [], [])
            infos = [InstanceInfo(uuid=u) for u in added]

            def work(conn: Connection) -> int:
                store.delete_instances(conn, removed)
                others = store.save_instances(conn, host, infos, utcnow())
                return store.record_change(conn, store.SCOPE_INSTANCES, [host, *others])

            seq = self.db.transaction(work)
            moved_from = self._move_instances(host, infos)

            def correct(records: _Records) -> None:
                for uuid in removed:
                    records.instances[host].pop(uuid)
                _place(records, host, infos, moved_from)

            self._apply(correct, instances={host, *moved_from}, seq=seq)
            LOG.info(
                "host %s: instance list out of sync (%d added, %d removed); corrected",
                host,
                len(added),
                len(removed),
            )
            return SyncResult(False, added, removed)

    def _move_instances(self, host: str, infos: Sequence[InstanceInfo]) -> dict[str, str]:
        """instance uuid -> the other host it was recorded on (it moved to ``host``)."""
        wanted = {i.uuid for i in infos}
        return {
            uuid: other
            for other, held in self._records.instances.items()
            if other != host
            for uuid in wanted.intersection(held)
        }

    def _tracking(self) -> bool:
        if not self.settings.filter_scheduler.track_instance_changes:
            LOG.debug("[filter_scheduler] track_instance_changes is off; update ignored")
            return False
        return True

    # -- aggregates in placement --------------------------------------------------------

    def _nodes_by_host(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for uuid, record in self._records.hosts.items():
            found.setdefault(record.host, []).append(uuid)
        return found

    def _nodes_of(
        self, hosts: Iterable[str], by_host: Mapping[str, list[str]] | None = None
    ) -> list[str]:
        wanted = set(hosts)
        if not wanted:
            return []
        if by_host is None:
            by_host = self._nodes_by_host()
        return sorted(u for host in wanted for u in by_host.get(host, ()))

    def _mirror(
        self,
        ctx: RequestContext,
        uuid: str,
        added: Iterable[str],
        removed: Iterable[str],
        by_host: Mapping[str, list[str]] | None = None,
    ) -> None:
        if self.mirror is None:
            return
        add, remove = self._nodes_of(added, by_host), self._nodes_of(removed, by_host)
        if not add and not remove:
            return
        try:
            self.mirror.update_members(ctx, uuid, add, remove)
        except Exception:  # placement down: the periodic resync repairs it
            LOG.exception("could not mirror aggregate %s membership into placement", uuid)

    def _mirror_new_node(self, ctx: RequestContext, host: str, node_uuid: str) -> None:
        if self.mirror is None:
            return
        for aggregate in self._records.aggregates.values():
            if host in aggregate.hosts:
                try:
                    self.mirror.update_members(ctx, aggregate.uuid, [node_uuid], [])
                except Exception:
                    LOG.exception("could not mirror aggregate %s membership", aggregate.uuid)

    def resync_aggregates(self, ctx: RequestContext) -> None:
        """Push every aggregate's full membership to placement again."""
        policy.authorize(ctx, "scheduler:aggregates:update")
        if self.mirror is None:
            return
        with log.request_context(ctx), self._write_lock:
            # One pass over the hosts for every aggregate (thousands of each, every round).
            by_host = self._nodes_by_host()
            for aggregate in list(self._records.aggregates.values()):
                self._mirror(ctx, aggregate.uuid, aggregate.hosts, (), by_host)

    # -- maintenance --------------------------------------------------------------------

    def flush_heartbeats(self) -> int:
        """Write heartbeats received since the last flush; returns how many."""
        with self._lock:
            pending, self._unflushed = self._unflushed, {}
        if not pending:
            return 0

        def work(conn: Connection) -> list[int]:
            beats = {}
            saved: list[str] = []
            now = utcnow()
            for uuid, (record, volatile) in pending.items():
                if volatile:
                    saved.extend([uuid, *store.save_host(conn, record, now)])
                else:
                    beats[uuid] = record.heartbeat
            store.save_heartbeats(conn, beats)
            seqs = []
            if saved:
                seqs.append(store.record_change(conn, store.SCOPE_HOSTS, saved))
            if beats:
                oldest = min(beats.values())
                seqs.append(store.record_change(conn, store.SCOPE_HEARTBEATS, [oldest]))
            return seqs

        try:
            seqs = self.db.transaction(work)
        except Exception:
            with self._lock:
                for uuid, entry in pending.items():
                    self._unflushed.setdefault(uuid, entry)
            raise
        with self._lock:
            self._own.update(s for s in seqs if s > self._seq)
        return len(pending)

    def reset(self, ctx: RequestContext) -> HostSnapshot:
        """Rebuild the cache from SQL aside and swap it in atomically (SIGHUP / admin)."""
        policy.authorize(ctx, "scheduler:reset")
        with log.request_context(ctx), self._write_lock:
            started = time.perf_counter()
            self.flush_heartbeats()
            records = self._read()
            snapshot = self._build(records)
            with self._lock:
                self._records = records
                self._seq = records.seq
                self._own.clear()
                self._generation += 1
                snapshot.generation = self._generation
                self._snapshot = snapshot
                self._changed_hosts.clear()
                self._changed_instances.clear()
                self._rebuild = self._dirty = False
            LOG.info(
                "host cache rebuilt from the database: %d nodes, %d aggregates in %.0f ms",
                len(snapshot),
                len(records.aggregates),
                (time.perf_counter() - started) * 1000,
            )
            return snapshot

    def catch_up(self) -> int:
        """Apply what other processes wrote since the last position (host reports,
        aggregates, instance lists, heartbeats), reading exactly the rows the change log
        names; rebuild if the log was pruned past it. Returns how many changes applied."""
        applied = 0
        with self._write_lock:
            while True:
                started = time.time()
                with self.db.read() as conn:
                    found = store.changes_since(conn, self._seq, _BATCH)
                    if found and found[0].seq > self._seq + 1:
                        oldest = store.oldest_change(conn)
                        if oldest is not None and oldest > self._seq + 1:
                            found = []
                            pruned = True
                        else:
                            pruned = False
                    else:
                        pruned = False
                    if not pruned:
                        fresh = self._read_changes(conn, found)
                if pruned:
                    LOG.warning(
                        "the scheduler change log was pruned past this process's position %d; "
                        "rebuilding the host cache",
                        self._seq,
                    )
                    records = self._read()
                    with self._lock:
                        self._install(records)
                    return applied
                if not found:
                    self.caught_up_at = started
                    return applied
                with self._lock:
                    self._apply_fresh(fresh)
                    self._seq = max(self._seq, found[-1].seq)
                    self._own = {s for s in self._own if s > self._seq}
                applied += fresh.changes
                if len(found) < _BATCH:
                    self.caught_up_at = started
                    return applied

    def _read_changes(self, conn: Connection, found: Sequence[store.Change]) -> _Fresh:
        """The current rows of what ``found`` (less this process's own changes) names."""
        with self._lock:
            own = set(self._own)
        fresh = _Fresh()
        host_uuids: set[str] = set()
        aggregate_uuids: set[str] = set()
        instance_hosts: set[str] = set()
        beats_since: float | None = None
        for change in found:
            if change.seq in own:
                continue
            fresh.changes += 1
            if change.scope == store.SCOPE_HOSTS:
                host_uuids.update(change.keys)
            elif change.scope == store.SCOPE_AGGREGATES:
                aggregate_uuids.update(change.keys)
            elif change.scope == store.SCOPE_INSTANCES:
                instance_hosts.update(change.keys)
            elif change.scope == store.SCOPE_HEARTBEATS and change.keys:
                oldest = float(change.keys[0])
                beats_since = oldest if beats_since is None else min(beats_since, oldest)
        if host_uuids:
            found_hosts = {r.uuid: r for r in store.load_hosts(conn, host_uuids)}
            fresh.hosts = {u: found_hosts.get(u) for u in host_uuids}
        if aggregate_uuids:
            found_aggregates = {a.uuid: a for a in store.load_aggregates(conn, aggregate_uuids)}
            fresh.aggregates = {u: found_aggregates.get(u) for u in aggregate_uuids}
        if instance_hosts:
            found_instances = store.load_instances(conn, instance_hosts)
            fresh.instances = {h: found_instances.get(h, {}) for h in instance_hosts}
        if beats_since is not None:
            fresh.heartbeats = store.load_heartbeats(conn, beats_since)
        return fresh

    def _apply_fresh(self, fresh: _Fresh) -> None:
        """Make the records match rows read by ``catch_up`` (under ``_lock``). A heartbeat
        is the freshest any process recorded: the stored one or one not yet flushed here."""
        records = self._records
        rebuild = False
        changed: set[str] = set()
        for uuid, stored in fresh.hosts.items():
            old = records.hosts.get(uuid)
            if stored is None:
                if old is not None:
                    del records.hosts[uuid]
                    self._unflushed.pop(uuid, None)
                    rebuild = True
                continue
            beat = max(stored.heartbeat, old.heartbeat if old is not None else 0.0)
            row = replace(stored, heartbeat=beat)
            for other, held in list(records.hosts.items()):
                if other != uuid and (held.host, held.nodename) == (row.host, row.nodename):
                    del records.hosts[other]
                    rebuild = True
            if old is None or (old.host, old.nodename) != (row.host, row.nodename):
                rebuild = True
            records.hosts[uuid] = row
            if uuid in self._unflushed:
                # The stored report is newer than the one noted here: flush only the beat.
                self._unflushed[uuid] = (row, False)
            changed.add(uuid)
        for uuid, stored_beat in fresh.heartbeats.items():
            known = records.hosts.get(uuid)
            if known is not None and stored_beat > known.heartbeat:
                records.hosts[uuid] = replace(known, heartbeat=stored_beat)
                changed.add(uuid)
        for uuid, aggregate in fresh.aggregates.items():
            rebuild = True
            if aggregate is None:
                records.aggregates.pop(uuid, None)
            else:
                records.aggregates[uuid] = aggregate
        for host_name, infos in fresh.instances.items():
            if infos:
                records.instances[host_name] = dict(infos)
            else:
                records.instances.pop(host_name, None)
        if rebuild or changed or fresh.instances:
            self._changed_hosts.update(u for u in changed if u in records.hosts)
            self._changed_instances.update(fresh.instances)
            self._rebuild |= rebuild
            self._dirty = True

    def prune_changes(self, retention_s: float) -> int:
        """Forget scheduler change rows older than ``retention_s`` seconds."""
        cutoff = utcnow() - timedelta(seconds=retention_s)
        with self.db.write() as conn:
            return store.prune_changes(conn, cutoff)

    def unknown_providers(self, providers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Root providers (uuid, name) that no host has reported as its compute node."""
        known = self._records.hosts
        return [(uuid, name) for uuid, name in providers if uuid not in known]

    def discover(self) -> list[tuple[str, str]]:
        """Find root providers no host has reported (their hosts cannot be scheduled to
        until they report); newly found ones are logged once."""
        if self.providers is None:
            return []
        found = self.unknown_providers(self.providers())
        new = sorted(set(found) - set(self.unreported))
        if new:
            LOG.warning(
                "%d resource provider(s) in placement have no host report and cannot be "
                "scheduled to: %s",
                len(new),
                ", ".join(name for _, name in new[:20]) + (" ..." if len(new) > 20 else ""),
            )
        self.unreported = found
        return found

    def sync(self) -> None:
        """One round of the sync task (every half ``host_state_sync_delay``): write the
        heartbeats received here, then apply what other processes wrote."""
        ctx = RequestContext.internal()
        with log.request_context(ctx):
            try:
                flushed = self.flush_heartbeats()
                applied = self.catch_up()
                if flushed or applied:
                    LOG.debug("flushed %d heartbeats, applied %d changes", flushed, applied)
            except Exception:
                LOG.exception("host cache sync failed; retrying next round")

    def periodic(self, change_log_retention_s: float | None = None) -> None:
        """One round of the slow background task: discover unreported providers, repair
        placement aggregate membership, forget old change rows."""
        ctx = RequestContext.internal()
        with log.request_context(ctx):
            try:
                self.discover()
                self.resync_aggregates(ctx)
                if change_log_retention_s is not None:
                    pruned = self.prune_changes(change_log_retention_s)
                    if pruned:
                        LOG.debug("pruned %d scheduler change rows", pruned)
            except Exception:
                LOG.exception("host cache periodic task failed; retrying next round")

    def close(self) -> None:
        """Write what is still only in memory (at shutdown)."""
        self.flush_heartbeats()


@dataclass
class _Fresh:
    """Rows ``catch_up`` read for the changes of other processes (``None``: deleted)."""

    changes: int = 0
    hosts: dict[str, HostRecord | None] = field(default_factory=dict)
    aggregates: dict[str, Aggregate | None] = field(default_factory=dict)
    instances: dict[str, dict[str, InstanceInfo]] = field(default_factory=dict)
    heartbeats: dict[str, float] = field(default_factory=dict)


def _same_except_volatile(old: HostRecord, new: HostRecord) -> bool:
    if (old.host, old.nodename) != (new.host, new.nodename):
        return False
    if old.report is new.report:
        return True
    a, b = old.report, new.report
    return all(
        getattr(a, name) == getattr(b, name)
        for name in type(a).model_fields
        if name not in VOLATILE_FIELDS
    )


def _place(
    records: _Records, host: str, infos: Sequence[InstanceInfo], moved_from: dict[str, str]
) -> None:
    for uuid, other in moved_from.items():
        records.instances[other].pop(uuid, None)
    held = records.instances.setdefault(host, {})
    for info in infos:
        held[info.uuid] = info
