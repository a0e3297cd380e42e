"""Periodic background tasks: one daemon thread each, started and stopped with the app.

A failing run is logged and the task keeps its schedule; ``stop()`` wakes the thread at
once instead of waiting out the interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from allotment.context import new_request_id
from allotment.log import REQUEST_ID

LOG = logging.getLogger(__name__)


class PeriodicTask:
    def __init__(
        self, name: str, interval: float, work: Callable[[], object], *, run_first: bool = False
    ) -> None:
        self.name = name
        self.interval = interval
        self.work = work
        self.run_first = run_first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"periodic-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.interval))
            self._thread = None

    def run_once(self) -> None:
        token = REQUEST_ID.set(new_request_id())
        try:
            self.work()
        except Exception:
            LOG.exception(
                "periodic task %s failed; it will run again in %.1fs", self.name, self.interval
            )
        finally:
            REQUEST_ID.reset(token)

    def _loop(self) -> None:
        if self.run_first:
            self.run_once()
        while not self._stop.wait(self.interval):
            self.run_once()
