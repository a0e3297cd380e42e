"""Nova's databases, read-only: what Nova's own HostManager reads to know the hosts.

The API database (nova.conf's ``[api_database] connection``) holds the cell mappings, the
host mappings and the host aggregates with their hosts and metadata; each cell's database
(its ``cell_mappings.database_connection``, a template filled from ``[database]
connection`` as Nova fills it) holds that cell's compute nodes, services and instances.
Tables are declared here with only the columns read, as Nova's schema (``nova-manage
api_db sync`` / ``db sync``) has them; nothing here writes, and Nova is never imported.

A cell that cannot be read is reported as such (its hosts keep their last state, and their
heartbeats age out), the way Nova's scatter-gather skips a cell that fails.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from allotment import errors

LOG = logging.getLogger(__name__)
# Nova's cell0 (instances that failed to schedule): it has no compute nodes.
CELL0_UUID = "00000000-0000-0000-0000-000000000000"
COMPUTE_BINARY = "nova-compute"

_api = sa.MetaData()
cell_mappings = sa.Table(
    "cell_mappings",
    _api,
    sa.Column("id", sa.Integer),
    sa.Column("uuid", sa.String(36)),
    sa.Column("name", sa.String(255)),
    sa.Column("database_connection", sa.Text),
    sa.Column("disabled", sa.Boolean),
)
host_mappings = sa.Table(
    "host_mappings",
    _api,
    sa.Column("cell_id", sa.Integer),
    sa.Column("host", sa.String(255)),
)
aggregates = sa.Table(
    "aggregates",
    _api,
    sa.Column("id", sa.Integer),
    sa.Column("uuid", sa.String(36)),
    sa.Column("name", sa.String(255)),
)
aggregate_hosts = sa.Table(
    "aggregate_hosts",
    _api,
    sa.Column("host", sa.String(255)),
    sa.Column("aggregate_id", sa.Integer),
)
aggregate_metadata = sa.Table(
    "aggregate_metadata",
    _api,
    sa.Column("key", sa.String(255)),
    sa.Column("value", sa.String(255)),
    sa.Column("aggregate_id", sa.Integer),
)

_cell = sa.MetaData()
services = sa.Table(
    "services",
    _cell,
    sa.Column("host", sa.String(255)),
    sa.Column("binary", sa.String(255)),
    sa.Column("disabled", sa.Boolean),
    sa.Column("disabled_reason", sa.String(255)),
    sa.Column("forced_down", sa.Boolean),
    sa.Column("last_seen_up", sa.DateTime),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
    sa.Column("version", sa.Integer),
    sa.Column("deleted", sa.Integer),
)


class IPAddressText(sa.types.TypeDecorator[str]):
    """Nova's ``IPAddress`` column read as its text: ``INET`` on PostgreSQL (which the
    driver answers as an ``ipaddress`` object), ``VARCHAR(39)`` on MySQL/MariaDB."""

    impl = sa.Text
    cache_ok = True

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else str(value)


# The compute node columns the scheduler's host state is made of.
NODE_COLUMNS = (
    "uuid",
    "host",
    "hypervisor_hostname",
    "hypervisor_type",
    "hypervisor_version",
    "host_ip",
    "cpu_info",
    "numa_topology",
    "pci_stats",
    "stats",
    "metrics",
    "supported_instances",
    "vcpus",
    "vcpus_used",
    "memory_mb",
    "memory_mb_used",
    "free_ram_mb",
    "local_gb",
    "local_gb_used",
    "free_disk_gb",
    "running_vms",
    "cpu_allocation_ratio",
    "ram_allocation_ratio",
    "disk_allocation_ratio",
)
_NODE_TYPES: dict[str, Any] = {
    "host_ip": IPAddressText,
    "hypervisor_version": sa.Integer,
    "vcpus": sa.Integer,
    "vcpus_used": sa.Integer,
    "memory_mb": sa.Integer,
    "memory_mb_used": sa.Integer,
    "free_ram_mb": sa.Integer,
    "local_gb": sa.Integer,
    "local_gb_used": sa.Integer,
    "free_disk_gb": sa.Integer,
    "running_vms": sa.Integer,
    "cpu_allocation_ratio": sa.Float,
    "ram_allocation_ratio": sa.Float,
    "disk_allocation_ratio": sa.Float,
}
compute_nodes = sa.Table(
    "compute_nodes",
    _cell,
    *(sa.Column(name, _NODE_TYPES.get(name, sa.Text)) for name in NODE_COLUMNS),
    sa.Column("deleted", sa.Integer),
)
instances = sa.Table(
    "instances",
    _cell,
    sa.Column("uuid", sa.String(36)),
    sa.Column("host", sa.String(255)),
    sa.Column("project_id", sa.String(255)),
    sa.Column("user_id", sa.String(255)),
    sa.Column("deleted", sa.Integer),
)


@dataclass(frozen=True, slots=True)
class Cell:
    uuid: str
    name: str | None
    database_url: str
    disabled: bool


@dataclass(frozen=True, slots=True)
class NovaAggregateRow:
    uuid: str
    name: str
    hosts: frozenset[str]
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class ServiceRow:
    host: str
    disabled: bool
    disabled_reason: str | None
    forced_down: bool
    # Seconds since the epoch of the last state report (Nova's db servicegroup driver:
    # last_seen_up, else created_at); None when Nova has neither.
    last_seen_up: float | None
    version: int


@dataclass(frozen=True, slots=True)
class InstanceRow:
    uuid: str
    project_id: str | None
    user_id: str | None


@dataclass
class CellState:
    """One cell's rows: compute-service rows by host (as Nova keys them), compute nodes
    (``NODE_COLUMNS`` as a tuple each), instances by host."""

    cell: Cell
    services: dict[str, ServiceRow] = field(default_factory=dict)
    nodes: list[tuple[Any, ...]] = field(default_factory=list)
    instances: dict[str, list[InstanceRow]] = field(default_factory=dict)


@dataclass
class NovaState:
    """One read of every database: cells read, cells that failed, and the API rows."""

    cells: list[Cell]
    host_mappings: dict[str, str]
    aggregates: list[NovaAggregateRow]
    read: dict[str, CellState] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _epoch(value: datetime | None) -> float | None:
    # Nova stores naive UTC timestamps.
    return None if value is None else value.replace(tzinfo=UTC).timestamp()


def sqlalchemy_url(url: str) -> str:
    """An oslo.db connection URL as our SQLAlchemy reads it: ``mysql://`` (MySQLdb, which
    we do not ship) through PyMySQL, ``postgresql://`` through psycopg 3."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise errors.ConfigError(f"{url!r} is not a database URL")
    base = scheme.split("+", 1)[0]
    if base == "mysql" and scheme != "mysql+pymysql":
        scheme = "mysql+pymysql"
    elif base in ("postgresql", "postgres") and scheme != "postgresql+psycopg":
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


def format_cell_url(template: str, default: str | None) -> str:
    """A cell's ``database_connection``, its ``{username}``, ``{password}``,
    ``{hostname}``, ``{port}``, ``{scheme}``, ``{path}``, ``{query}``, ``{fragment}``
    filled from ``[database] connection`` (Nova's templated cell mappings)."""
    if "{" not in template:
        return template
    if not default:
        raise errors.ConfigError(
            "a cell mapping's database_connection is a template, but nova.conf has no "
            "[database] connection to fill it from"
        )
    parts = urllib.parse.urlparse(default)
    values = {
        "username": parts.username,
        "password": parts.password,
        "hostname": parts.hostname,
        "port": parts.port,
        "scheme": parts.scheme,
        "query": parts.query,
        "fragment": parts.fragment,
        "path": parts.path.lstrip("/"),
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise errors.ConfigError(f"a cell mapping's database_connection template: {exc}") from None


def _redacted(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable URL>"


class NovaDatabases:
    """Engines on the API database and on each cell database (made on first use, kept
    while the cell's URL stays the same)."""

    def __init__(self, api_url: str, main_url: str | None) -> None:
        self.api_url = api_url
        self.main_url = main_url
        self._lock = threading.Lock()
        self._engines: dict[str, Engine] = {}

    def _engine(self, url: str) -> Engine:
        with self._lock:
            engine = self._engines.get(url)
            if engine is None:
                # Small pools: one reader thread; each read is its own short transaction.
                engine = sa.create_engine(
                    sqlalchemy_url(url), pool_size=1, max_overflow=1, pool_pre_ping=True
                )
                self._engines[url] = engine
            return engine

    def dispose(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def read(self) -> NovaState:
        """Every row the host state needs; raises if the API database cannot be read."""
        state = self._read_api()
        wanted = {cell.database_url for cell in state.cells}
        with self._lock:
            for url in list(self._engines):
                if url not in wanted and url != self.api_url:
                    self._engines.pop(url).dispose()
        for cell in state.cells:
            try:
                state.read[cell.uuid] = self._read_cell(cell)
            except sa.exc.SQLAlchemyError as exc:
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                state.failed[cell.uuid] = reason
                LOG.warning(
                    "cell %s (%s, %s) could not be read: %s; its hosts keep their last state",
                    cell.uuid,
                    cell.name,
                    _redacted(cell.database_url),
                    reason,
                )
        return state

    def _read_api(self) -> NovaState:
        with self._engine(self.api_url).connect() as conn:
            cells: list[Cell] = []
            cell_of_id: dict[int, str] = {}
            for row in conn.execute(sa.select(cell_mappings)):
                cell_of_id[row.id] = row.uuid
                if row.uuid == CELL0_UUID or row.disabled:
                    continue  # Nova's scheduler reads neither cell0 nor disabled cells
                cells.append(
                    Cell(
                        row.uuid,
                        row.name,
                        format_cell_url(row.database_connection or "", self.main_url),
                        bool(row.disabled),
                    )
                )
            mappings = {
                row.host: cell_of_id.get(row.cell_id, "")
                for row in conn.execute(sa.select(host_mappings))
            }
            members: dict[int, set[str]] = {}
            for row in conn.execute(sa.select(aggregate_hosts)):
                members.setdefault(row.aggregate_id, set()).add(row.host)
            metadata: dict[int, dict[str, str]] = {}
            for row in conn.execute(sa.select(aggregate_metadata)):
                metadata.setdefault(row.aggregate_id, {})[row.key] = row.value
            found = [
                NovaAggregateRow(
                    row.uuid,
                    row.name or "",
                    frozenset(members.get(row.id, ())),
                    metadata.get(row.id, {}),
                )
                for row in conn.execute(sa.select(aggregates).order_by(aggregates.c.id))
                if row.uuid
            ]
        return NovaState(cells=cells, host_mappings=mappings, aggregates=found)

    def _read_cell(self, cell: Cell) -> CellState:
        state = CellState(cell)
        with self._engine(cell.database_url).connect() as conn:
            query = (
                sa.select(services)
                .where(services.c.binary == COMPUTE_BINARY, services.c.deleted == 0)
                .order_by(services.c.host)
            )
            for row in conn.execute(query):
                state.services[row.host] = ServiceRow(
                    host=row.host,
                    disabled=bool(row.disabled),
                    disabled_reason=row.disabled_reason,
                    forced_down=bool(row.forced_down),
                    last_seen_up=_epoch(row.last_seen_up or row.created_at),
                    version=int(row.version or 0),
                )
            columns = [compute_nodes.c[name] for name in NODE_COLUMNS]
            query = sa.select(*columns).where(compute_nodes.c.deleted == 0)
            state.nodes = [tuple(row) for row in conn.execute(query)]
            query = sa.select(
                instances.c.uuid, instances.c.host, instances.c.project_id, instances.c.user_id
            ).where(instances.c.deleted == 0, instances.c.host.is_not(None))
            for row in conn.execute(query):
                state.instances.setdefault(row.host, []).append(
                    InstanceRow(row.uuid, row.project_id, row.user_id)
                )
        return state


def node_dict(row: tuple[Any, ...]) -> Mapping[str, Any]:
    """A compute node row (``NODE_COLUMNS`` order) by column name."""
    return dict(zip(NODE_COLUMNS, row, strict=True))
