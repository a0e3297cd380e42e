"""What this process depends on and whether it is reachable: the database today.

A request that fails because the database cannot be reached is a 503 with the code
``allotment.database_unavailable`` (never a 500), and marks the database down; the
periodic capacity-index poll marks it up again once a query succeeds, so ``GET /`` can
say what is down without a query of its own, and the process recovers by itself.

``readiness`` is what ``GET /readyz`` answers for load balancers and Kubernetes probes
(``GET /healthz`` only says the process answers).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from allotment import errors
from allotment.config import Settings
from allotment.db import migrate
from allotment.db.database import Database
from allotment.log import redact

if TYPE_CHECKING:
    from allotment.placement.index.sync import CapacityIndex
    from allotment.scheduler.host_manager import HostManager

LOG = logging.getLogger(__name__)
DATABASE = "database"
# Errors that mean "the database cannot be reached or cannot take a connection now", as
# opposed to a query the database refused.
_UNAVAILABLE = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
)


class Health:
    """Dependencies currently known to be down, with the reason (safe to show)."""

    def __init__(self) -> None:
        self._down: dict[str, str] = {}
        self._lock = threading.Lock()

    def down(self) -> dict[str, str]:
        with self._lock:
            return dict(self._down)

    def mark_down(self, name: str, reason: str) -> None:
        with self._lock:
            was_up = name not in self._down
            self._down[name] = reason
        if was_up:
            LOG.error("%s unavailable: %s", name, reason)

    def mark_up(self, name: str) -> None:
        with self._lock:
            was_down = self._down.pop(name, None) is not None
        if was_down:
            LOG.warning("%s available again", name)

    def watching_database(self, work: Callable[[], object]) -> Callable[[], None]:
        """``work`` (a periodic task that queries the database), reporting what it finds."""

        def run() -> None:
            try:
                work()
            except _UNAVAILABLE as exc:
                self.mark_down(DATABASE, _reason(exc))
                raise
            self.mark_up(DATABASE)

        return run

    def as_error(self, exc: BaseException) -> errors.AllotmentError | None:
        """The 503 a dependency failure becomes, or None for any other exception."""
        if not isinstance(exc, _UNAVAILABLE):
            return None
        reason = _reason(exc)
        self.mark_down(DATABASE, reason)
        return errors.DatabaseUnavailable(
            f"The database is unavailable ({reason}); try again later."
        )


def _reason(exc: BaseException) -> str:
    """The driver's first line, without the SQL or parameters SQLAlchemy appends."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return redact(f"{type(orig).__name__}: {text[0] if text else 'no detail'}")


# A view may lag this many times its delay before the process stops being ready (one slow
# round at 100,000 hosts is not an outage), and never less than the floor.
LAG_FACTOR = 3.0
LAG_FLOOR_S = 5.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.detail}


def readiness(
    db: Database,
    settings: Settings,
    index: CapacityIndex | None,
    hosts: HostManager | None,
    *,
    now: float | None = None,
) -> list[Check]:
    """What ``/readyz`` checks: the database answers a query, its schema is at the
    newest migration, and the capacity index and host cache have caught up with the
    change logs within ``LAG_FACTOR`` times their delay."""
    checks: list[Check] = []
    revision: str | None = None
    try:
        with db.read() as conn:
            conn.execute(sa.text("SELECT 1"))
        revision = migrate.current_revision(db)
    except _UNAVAILABLE as exc:
        checks.append(Check(DATABASE, False, {"error": _reason(exc)}))
        checks.append(Check("migrations", False, {"error": "the database is unreachable"}))
    else:
        checks.append(Check(DATABASE, True, {}))
        head = _head_revision()
        checks.append(
            Check("migrations", revision == head, {"current": revision, "expected": head})
        )
    moment = time.time() if now is None else now
    views = (
        ("capacity_index", index, settings.placement.index_poll_interval),
        ("host_cache", hosts, settings.scheduler.host_state_sync_delay),
    )
    for name, view, delay in views:
        if view is None:
            continue
        lag = lag_seconds(view.caught_up_at, moment)
        limit = max(LAG_FLOOR_S, LAG_FACTOR * delay)
        detail: dict[str, Any] = {"max_lag_s": limit}
        if view.caught_up_at is None:
            detail["error"] = "not loaded yet"
        else:
            detail["lag_s"] = round(lag, 3)
        checks.append(Check(name, lag <= limit, detail))
    return checks


@functools.cache
def _head_revision() -> str | None:
    """The newest migration this code ships (read from the scripts once per process)."""
    return migrate.head_revision()


def lag_seconds(caught_up_at: float | None, now: float) -> float:
    """Seconds since a view last had applied its whole change log (infinite: never)."""
    if caught_up_at is None:
        return float("inf")
    return max(0.0, now - caught_up_at)
