"""SQL persistence of the host state cache: host reports, aggregates, instances per host.

The tables live in the same schema as the ledger (one database, one migration history)
but only the HostManager reads or writes them. Structured report fields are stored as one
JSON document per host, validated again when loaded, so a report written by an older
version is read with today's defaults.

Every write appends one ``scheduler_changes`` row naming what it touched (node uuids,
aggregate uuids, host names of instance lists, or the oldest heartbeat of a flush), so
every process's HostManager can catch up by re-reading exactly those rows. Like the
ledger's change log, it is numbered in commit order (``allotment.db.sequence``). It is a
log of its own because the host cache
must not scan placement's claim traffic, nor the scheduler read placement's tables.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from allotment.db import bulk
from allotment.db.database import utcnow
from allotment.db.metadata import metadata
from allotment.db.sequence import CommitOrderedLog
from allotment.scheduler.records import Aggregate, HostRecord, HostReport, InstanceInfo

hosts = sa.Table(
    "scheduler_hosts",
    metadata,
    # The compute node's resource provider uuid.
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("host", sa.Unicode(255), nullable=False),
    sa.Column("nodename", sa.Unicode(255), nullable=False),
    # The HostReport as JSON (NUMA cells, PCI pools, metrics, CPU info, ...).
    sa.Column("report", sa.Text, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.Unicode(255), nullable=True),
    # Seconds since the epoch of the last report or heartbeat.
    sa.Column("heartbeat", sa.Double, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint("host", "nodename"),
)

aggregates = sa.Table(
    "scheduler_aggregates",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("name", sa.Unicode(255), nullable=False),
    # {key: value} as JSON.
    sa.Column("aggregate_metadata", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=True),
)

aggregate_hosts = sa.Table(
    "scheduler_aggregate_hosts",
    metadata,
    sa.Column("aggregate_uuid", sa.String(36), primary_key=True),
    # Host names, as Nova aggregates hold them (a host may not have reported yet).
    sa.Column("host", sa.Unicode(255), primary_key=True, index=True),
)

instances = sa.Table(
    "scheduler_instances",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("host", sa.Unicode(255), nullable=False, index=True),
    # InstanceInfo without the uuid, as JSON.
    sa.Column("info", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)


# Sequence numbers of scheduler_changes by commit order (one row, id 1).
change_counter = sa.Table(
    "scheduler_change_counter",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
)

changes = sa.Table(
    "scheduler_changes",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    # One of the SCOPE_* names below.
    sa.Column("scope", sa.String(32), nullable=False),
    # A JSON list: what the write touched, in the scope's terms.
    sa.Column("touched", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False, index=True),
)

_LOG = CommitOrderedLog(changes, change_counter)

# Node (compute node uuid) rows written or deleted.
SCOPE_HOSTS = "hosts"
# Aggregates (uuids) written or deleted.
SCOPE_AGGREGATES = "aggregates"
# Host names whose instance lists changed.
SCOPE_INSTANCES = "instances"
# A heartbeat flush: one key, the oldest heartbeat it wrote (every one it wrote is newer).
SCOPE_HEARTBEATS = "heartbeats"


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    scope: str
    keys: tuple[Any, ...]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _upsert(
    conn: Connection,
    table: sa.Table,
    values: Mapping[str, Any],
    keep: Iterable[str],
    on_update: Mapping[str, Any] | None = None,
) -> None:
    """Insert a row or update it in place (keyed by the primary key); columns in ``keep``
    are not overwritten on update, those in ``on_update`` get its expressions."""
    update = {k: v for k, v in values.items() if k not in set(keep)}
    update.update(on_update or {})
    name = conn.dialect.name
    if name == "postgresql":
        pg = postgresql.insert(table).values(**values)
        keys = [c.name for c in table.primary_key.columns]
        conn.execute(pg.on_conflict_do_update(index_elements=keys, set_=update))
    elif name == "mysql":
        my = mysql.insert(table).values(**values)
        conn.execute(my.on_duplicate_key_update(**update))
    else:
        lite = sqlite.insert(table).values(**values)
        keys = [c.name for c in table.primary_key.columns]
        conn.execute(lite.on_conflict_do_update(index_elements=keys, set_=update))


def record_change(conn: Connection, scope: str, keys: Iterable[Any]) -> int:
    """Append a change row; returns its sequence number. Call last, just before commit."""
    values = {"scope": scope, "touched": _json(sorted(set(keys))), "created_at": utcnow()}
    return _LOG.append(conn, values)


def changes_since(conn: Connection, seq: int, limit: int) -> list[Change]:
    """Change rows after ``seq``, oldest first."""
    rows = conn.execute(
        sa.select(changes.c.seq, changes.c.scope, changes.c.touched)
        .where(changes.c.seq > seq)
        .order_by(changes.c.seq)
        .limit(limit)
    ).all()
    return [Change(row.seq, row.scope, tuple(orjson.loads(row.touched))) for row in rows]


def latest_change(conn: Connection) -> int:
    """The newest sequence number (0 for an empty log)."""
    return _LOG.latest(conn)


def oldest_change(conn: Connection) -> int | None:
    return _LOG.oldest(conn)


def prune_changes(conn: Connection, older_than: datetime) -> int:
    """Forget change rows older than ``older_than`` (always keeping the newest one)."""
    return _LOG.prune(conn, older_than)


def save_host(conn: Connection, record: HostRecord, now: datetime) -> list[str]:
    """Write a node's row; returns the uuids of the rows it replaced (another node that
    held this host and nodename before)."""
    replaced = list(
        conn.execute(
            sa.select(hosts.c.uuid).where(
                hosts.c.host == record.host,
                hosts.c.nodename == record.nodename,
                hosts.c.uuid != record.uuid,
            )
        ).scalars()
    )
    if replaced:
        conn.execute(hosts.delete().where(hosts.c.uuid.in_(replaced)))
    _upsert(
        conn,
        hosts,
        _host_row(record, now),
        keep=("created_at",),
        # Another process may have recorded a fresher heartbeat meanwhile.
        on_update={
            "heartbeat": sa.case(
                (hosts.c.heartbeat > record.heartbeat, hosts.c.heartbeat),
                else_=record.heartbeat,
            )
        },
    )
    return replaced


def delete_hosts(conn: Connection, uuids: Collection[str]) -> None:
    """Forget these nodes (their report and heartbeat): a host deleted over HTTP, or a
    compute node gone from Nova's database."""
    if uuids:
        conn.execute(hosts.delete().where(hosts.c.uuid.in_(sorted(uuids))))


def save_heartbeats(conn: Connection, beats: Mapping[str, float]) -> None:
    """One statement for every node that reported; a heartbeat never goes back in time
    (another process may have recorded a fresher one)."""
    if beats:
        conn.execute(
            hosts.update()
            .where(hosts.c.uuid == sa.bindparam("u"), hosts.c.heartbeat < sa.bindparam("t"))
            .values(heartbeat=sa.bindparam("t")),
            [{"u": uuid, "t": t} for uuid, t in beats.items()],
        )


def save_aggregate(conn: Connection, aggregate: Aggregate, now: datetime) -> None:
    _upsert(conn, aggregates, _aggregate_row(aggregate, now), keep=("created_at",))
    conn.execute(aggregate_hosts.delete().where(aggregate_hosts.c.aggregate_uuid == aggregate.uuid))
    if aggregate.hosts:
        conn.execute(aggregate_hosts.insert(), _member_rows(aggregate))


def delete_aggregate(conn: Connection, uuid: str) -> None:
    conn.execute(aggregate_hosts.delete().where(aggregate_hosts.c.aggregate_uuid == uuid))
    conn.execute(aggregates.delete().where(aggregates.c.uuid == uuid))


def save_instances(
    conn: Connection, host: str, infos: Collection[InstanceInfo], now: datetime
) -> set[str]:
    """Record instances on ``host``; returns the other hosts they were recorded on."""
    wanted = [i.uuid for i in infos]
    previous = set(
        conn.execute(
            sa.select(instances.c.host).where(
                instances.c.uuid.in_(wanted), instances.c.host != host
            )
        ).scalars()
    )
    for info in infos:
        _upsert(conn, instances, _instance_row(host, info, now), keep=())
    return previous


def delete_instances(conn: Connection, uuids: Iterable[str]) -> None:
    wanted = list(uuids)
    if wanted:
        conn.execute(instances.delete().where(instances.c.uuid.in_(wanted)))


def insert_all(
    conn: Connection,
    records: Iterable[HostRecord],
    aggregate_list: Iterable[Aggregate],
    instance_lists: Mapping[str, Collection[InstanceInfo]],
    now: datetime,
) -> None:
    """Bulk-load an empty cache (a seeded cloud): the rows ``save_host``,
    ``save_aggregate`` and ``save_instances`` would write, in a few multi-row statements
    instead of a few per row. Records no change: the processes that start afterwards
    load everything."""
    aggregate_list = list(aggregate_list)
    bulk.insert_rows(conn, hosts, [_host_row(r, now) for r in records])
    bulk.insert_rows(conn, aggregates, [_aggregate_row(a, now) for a in aggregate_list])
    bulk.insert_rows(conn, aggregate_hosts, [m for a in aggregate_list for m in _member_rows(a)])
    bulk.insert_rows(
        conn,
        instances,
        [_instance_row(host, i, now) for host, infos in instance_lists.items() for i in infos],
    )


def _host_row(record: HostRecord, now: datetime) -> dict[str, Any]:
    report = record.report
    return {
        "uuid": record.uuid,
        "host": record.host,
        "nodename": record.nodename,
        "report": report.model_dump_json(),
        "disabled": report.disabled,
        "disabled_reason": report.disabled_reason,
        "heartbeat": record.heartbeat,
        "created_at": now,
        "updated_at": now,
    }


def _aggregate_row(aggregate: Aggregate, now: datetime) -> dict[str, Any]:
    return {
        "uuid": aggregate.uuid,
        "name": aggregate.name,
        "aggregate_metadata": _json(aggregate.metadata),
        "created_at": now,
        "updated_at": now,
    }


def _member_rows(aggregate: Aggregate) -> list[dict[str, str]]:
    return [{"aggregate_uuid": aggregate.uuid, "host": h} for h in sorted(aggregate.hosts)]


def _instance_row(host: str, info: InstanceInfo, now: datetime) -> dict[str, Any]:
    return {
        "uuid": info.uuid,
        "host": host,
        "info": info.model_dump_json(exclude={"uuid"}),
        "updated_at": now,
    }


def load(
    conn: Connection,
) -> tuple[list[HostRecord], list[Aggregate], dict[str, dict[str, InstanceInfo]]]:
    """Everything the cache holds, as stored."""
    return load_hosts(conn), load_aggregates(conn), load_instances(conn)


def load_hosts(conn: Connection, uuids: Collection[str] | None = None) -> list[HostRecord]:
    """The node rows (all, or those of ``uuids`` that exist)."""
    query = sa.select(hosts)
    if uuids is not None:
        query = query.where(hosts.c.uuid.in_(list(uuids)))
    return [
        HostRecord(
            host=row.host,
            nodename=row.nodename,
            report=HostReport.model_validate_json(row.report),
            heartbeat=float(row.heartbeat),
            updated_at=(row.updated_at or row.created_at).replace(tzinfo=UTC).timestamp(),
        )
        for row in conn.execute(query)
    ]


def load_heartbeats(conn: Connection, since: float) -> dict[str, float]:
    """node uuid -> heartbeat, of the nodes heard from at ``since`` or later."""
    query = sa.select(hosts.c.uuid, hosts.c.heartbeat).where(hosts.c.heartbeat >= since)
    return {row.uuid: float(row.heartbeat) for row in conn.execute(query)}


def load_aggregates(conn: Connection, uuids: Collection[str] | None = None) -> list[Aggregate]:
    """The aggregates (all, or those of ``uuids`` that exist)."""
    members_query = sa.select(aggregate_hosts)
    query = sa.select(aggregates)
    if uuids is not None:
        members_query = members_query.where(aggregate_hosts.c.aggregate_uuid.in_(list(uuids)))
        query = query.where(aggregates.c.uuid.in_(list(uuids)))
    members: dict[str, set[str]] = {}
    for row in conn.execute(members_query):
        members.setdefault(row.aggregate_uuid, set()).add(row.host)
    return [
        Aggregate(
            uuid=row.uuid,
            name=row.name,
            metadata=orjson.loads(row.aggregate_metadata),
            hosts=frozenset(members.get(row.uuid, ())),
        )
        for row in conn.execute(query)
    ]


def load_instances(
    conn: Connection, host_names: Collection[str] | None = None
) -> dict[str, dict[str, InstanceInfo]]:
    """host -> instance uuid -> info (all hosts, or those of ``host_names``)."""
    query = sa.select(instances.c.uuid, instances.c.host, instances.c.info)
    if host_names is not None:
        query = query.where(instances.c.host.in_(list(host_names)))
    by_host: dict[str, dict[str, InstanceInfo]] = {}
    for row in conn.execute(query):
        info = InstanceInfo.model_validate({"uuid": row.uuid, **orjson.loads(row.info)})
        by_host.setdefault(row.host, {})[info.uuid] = info
    return by_host
