"""What this process depends on and whether it is reachable: the database today.

A request that fails because the database cannot be reached is a 503 with the code
``allotment.database_unavailable`` (never a 500), and marks the database down; the
periodic capacity-index poll marks it up again once a query succeeds, so ``GET /`` can
say what is down without a query of its own, and the process recovers by itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa

from allotment import errors
from allotment.log import redact

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
