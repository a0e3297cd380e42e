"""SQL persistence of the host state cache: host reports, aggregates, instances per host.

The tables live in the same schema as the ledger (one database, one migration history)
but only the HostManager reads or writes them. Structured report fields are stored as one
JSON document per host, validated again when loaded, so a report written by an older
version is read with today's defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from allotment.db.metadata import metadata
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


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _upsert(
    conn: Connection, table: sa.Table, values: Mapping[str, Any], keep: Iterable[str]
) -> None:
    """Insert a row or update it in place (keyed by the primary key); columns in ``keep``
    are not overwritten on update."""
    update = {k: v for k, v in values.items() if k not in set(keep)}
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


def save_host(conn: Connection, record: HostRecord, now: datetime) -> None:
    report = record.report
    # The row of another node that held this (host, nodename) before is replaced.
    conn.execute(
        hosts.delete().where(
            hosts.c.host == record.host,
            hosts.c.nodename == record.nodename,
            hosts.c.uuid != record.uuid,
        )
    )
    _upsert(
        conn,
        hosts,
        {
            "uuid": record.uuid,
            "host": record.host,
            "nodename": record.nodename,
            "report": report.model_dump_json(),
            "disabled": report.disabled,
            "disabled_reason": report.disabled_reason,
            "heartbeat": record.heartbeat,
            "created_at": now,
            "updated_at": now,
        },
        keep=("created_at",),
    )


def save_heartbeats(conn: Connection, beats: Mapping[str, float]) -> None:
    if beats:
        conn.execute(
            hosts.update()
            .where(hosts.c.uuid == sa.bindparam("u"))
            .values(heartbeat=sa.bindparam("t")),
            [{"u": uuid, "t": t} for uuid, t in beats.items()],
        )


def save_aggregate(conn: Connection, aggregate: Aggregate, now: datetime) -> None:
    _upsert(
        conn,
        aggregates,
        {
            "uuid": aggregate.uuid,
            "name": aggregate.name,
            "aggregate_metadata": _json(aggregate.metadata),
            "created_at": now,
            "updated_at": now,
        },
        keep=("created_at",),
    )
    conn.execute(aggregate_hosts.delete().where(aggregate_hosts.c.aggregate_uuid == aggregate.uuid))
    if aggregate.hosts:
        conn.execute(
            aggregate_hosts.insert(),
            [{"aggregate_uuid": aggregate.uuid, "host": h} for h in sorted(aggregate.hosts)],
        )


def delete_aggregate(conn: Connection, uuid: str) -> None:
    conn.execute(aggregate_hosts.delete().where(aggregate_hosts.c.aggregate_uuid == uuid))
    conn.execute(aggregates.delete().where(aggregates.c.uuid == uuid))


def save_instances(
    conn: Connection, host: str, infos: Iterable[InstanceInfo], now: datetime
) -> None:
    for info in infos:
        _upsert(
            conn,
            instances,
            {
                "uuid": info.uuid,
                "host": host,
                "info": info.model_dump_json(exclude={"uuid"}),
                "updated_at": now,
            },
            keep=(),
        )


def delete_instances(conn: Connection, uuids: Iterable[str]) -> None:
    wanted = list(uuids)
    if wanted:
        conn.execute(instances.delete().where(instances.c.uuid.in_(wanted)))


def load(
    conn: Connection,
) -> tuple[list[HostRecord], list[Aggregate], dict[str, dict[str, InstanceInfo]]]:
    """Everything the cache holds, as stored."""
    records = [
        HostRecord(
            host=row.host,
            nodename=row.nodename,
            report=HostReport.model_validate_json(row.report),
            heartbeat=float(row.heartbeat),
            updated_at=(row.updated_at or row.created_at).replace(tzinfo=UTC).timestamp(),
        )
        for row in conn.execute(sa.select(hosts))
    ]
    members: dict[str, set[str]] = {}
    for row in conn.execute(sa.select(aggregate_hosts)):
        members.setdefault(row.aggregate_uuid, set()).add(row.host)
    found_aggregates = [
        Aggregate(
            uuid=row.uuid,
            name=row.name,
            metadata=orjson.loads(row.aggregate_metadata),
            hosts=frozenset(members.get(row.uuid, ())),
        )
        for row in conn.execute(sa.select(aggregates))
    ]
    by_host: dict[str, dict[str, InstanceInfo]] = {}
    for row in conn.execute(sa.select(instances.c.uuid, instances.c.host, instances.c.info)):
        info = InstanceInfo.model_validate({"uuid": row.uuid, **orjson.loads(row.info)})
        by_host.setdefault(row.host, {})[info.uuid] = info
    return records, found_aggregates, by_host
