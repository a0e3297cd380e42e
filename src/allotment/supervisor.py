"""``allotment serve --workers N``: a small pre-fork supervisor.

The supervisor binds the listening socket once, then forks N workers. A worker inherits
the socket and the already-parsed :class:`Settings` (nothing secret passes through the
environment, the command line or a file), sets up logging the way a single process does,
builds its own services (database engines are created after the fork, never inherited)
and serves with uvicorn on the inherited socket.

The supervisor itself never serves and holds no database connection. It:

- forwards ``SIGHUP`` to every worker, coalesced: however many arrive, every worker gets at
  least one after the last, and a worker still starting gets it once it is ready (its host
  cache loaded before the signal might have been sent);
- on ``SIGTERM``/``SIGINT`` forwards ``SIGTERM``, waits ``[server] graceful_timeout``,
  then kills what is left, and exits 0; a second ``SIGTERM``/``SIGINT`` kills at once;
- restarts a worker that exits on its own (a crash, a kill), with a backoff per slot.

Workers die with the supervisor: ``PR_SET_PDEATHSIG`` (Linux) sends them ``SIGTERM`` when
it goes, and each also watches ``os.getppid()``, so no orphan keeps the port.

Hook for Prometheus multiprocess mode (not used yet): create a fresh directory under the
state directory and set ``PROMETHEUS_MULTIPROC_DIR`` in :meth:`Supervisor.run` before the
first fork (the variable holds no secret), and call ``mark_process_dead(pid)`` where
:meth:`Supervisor._reap` learns that a worker exited.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

LOG = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
# A worker that ran this long before it exited restarts without waiting again.
STABLE_AFTER_S = 30.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
# How often a worker checks that its supervisor is still there.
PARENT_CHECK_S = 1.0


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket every worker inherits (bound here, once)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the supervisor dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            LOG.warning("prctl(PR_SET_PDEATHSIG) is unavailable; relying on the parent check")
    # The supervisor may have died between the fork and the prctl call.
    if os.getppid() != parent:
        os._exit(0)


class ParentWatch(threading.Thread):
    """A worker's guard: when the supervisor is gone, ask for a graceful stop, and end the
    process if that has not finished within the graceful timeout."""

    def __init__(self, parent: int, stop: Callable[[], None], graceful_timeout: float) -> None:
        super().__init__(name="supervisor-watch", daemon=True)
        self.parent = parent
        self.stop = stop
        self.graceful_timeout = graceful_timeout

    def run(self) -> None:
        while os.getppid() == self.parent:
            time.sleep(PARENT_CHECK_S)
        LOG.warning("the supervisor (pid %d) is gone; this worker stops", self.parent)
        self.stop()
        time.sleep(self.graceful_timeout)
        os._exit(1)


@dataclass
class Worker:
    """One slot of the pool and the process currently filling it."""

    index: int
    pid: int = 0
    # Read end of the pipe the worker writes one byte to once it serves.
    ready_fd: int = -1
    ready: bool = False
    started_at: float = 0.0
    # A SIGHUP came while the worker was starting: send it once the worker is ready.
    hup_pending: bool = False
    failures: int = 0
    restart_at: float = 0.0


# Runs in the forked child: serve on the socket; call the function with no argument once
# serving. Returns the process's exit code.
WorkerMain = Callable[[int, socket.socket, Callable[[], None]], int]


class Supervisor:
    def __init__(
        self,
        sock: socket.socket,
        workers: int,
        worker_main: WorkerMain,
        *,
        graceful_timeout: float,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.sock = sock
        self.worker_main = worker_main
        # Told the pid of every worker that exited (metrics.worker_exited).
        self.on_exit = on_exit
        self.graceful_timeout = graceful_timeout
        self.workers = [Worker(index) for index in range(workers)]
        self._hup = False
        self._stop_signals = 0
        self._wakeup_r, self._wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(self._wakeup_w, False)

    # -- signals ----------------------------------------------------------------------

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._hup = True

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signals += 1

    def _on_child(self, signum: int, frame: FrameType | None) -> None:
        pass  # only wakes the loop (set_wakeup_fd); _reap does the work

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGCHLD, self._on_child)

    # -- workers ----------------------------------------------------------------------

    def _spawn(self, worker: Worker) -> None:
        ready_r, ready_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            self._child(worker.index, parent, ready_w)
        os.close(ready_w)
        worker.pid, worker.ready_fd, worker.ready = pid, ready_r, False
        worker.started_at = time.monotonic()
        worker.hup_pending = False
        LOG.info("worker %d started (pid %d)", worker.index, pid)

    def _child(self, index: int, parent: int, ready_w: int) -> NoReturn:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
            for other in self.workers:
                if other.ready_fd >= 0:
                    os.close(other.ready_fd)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # Until the host cache installs its handler, a SIGHUP must not kill the worker
            # (the supervisor sends one again once the worker reports ready).
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            # Ctrl-C reaches the whole process group: the supervisor turns it into SIGTERM.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            die_with_parent(parent)

            def ready() -> None:
                os.write(ready_w, b"r")
                os.close(ready_w)

            code = self.worker_main(index, self.sock, ready)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            LOG.exception("worker %d failed", index)
        finally:
            logging.shutdown()
            os._exit(code)

    def _signal(self, worker: Worker, signum: int) -> None:
        if worker.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)

    def _forward_hup(self) -> None:
        self._hup = False
        for worker in self.workers:
            if worker.ready:
                self._signal(worker, signal.SIGHUP)
            elif worker.pid:
                worker.hup_pending = True

    def _check_ready(self, readable: list[int]) -> None:
        for worker in self.workers:
            if worker.ready_fd in readable:
                try:
                    data = os.read(worker.ready_fd, 1)
                except OSError:
                    data = b""
                os.close(worker.ready_fd)
                worker.ready_fd = -1
                if data:
                    worker.ready = True
                    if worker.hup_pending:
                        worker.hup_pending = False
                        self._signal(worker, signal.SIGHUP)

    def _reap(self, stopping: bool) -> None:
        """Collect exited workers; schedule a restart unless stopping."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers if w.pid == pid), None)
            if worker is None:
                continue
            if self.on_exit is not None:
                self.on_exit(pid)
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)
                worker.ready_fd = -1
            ran = time.monotonic() - worker.started_at
            worker.pid, worker.ready = 0, False
            how = describe_exit(status)
            if stopping:
                LOG.info("worker %d (pid %d) %s", worker.index, pid, how)
                continue
            worker.failures = 1 if ran >= STABLE_AFTER_S else worker.failures + 1
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (worker.failures - 1))
            if ran >= STABLE_AFTER_S:
                delay = 0.0
            worker.restart_at = time.monotonic() + delay
            LOG.error(
                "worker %d (pid %d) %s after %.1fs; restarting it in %.1fs",
                worker.index,
                pid,
                how,
                ran,
                delay,
            )

    def _wait(self, timeout: float) -> list[int]:
        fds = [self._wakeup_r] + [w.ready_fd for w in self.workers if w.ready_fd >= 0]
        try:
            readable, _, _ = select.select(fds, [], [], max(0.0, timeout))
        except InterruptedError:
            return []
        if self._wakeup_r in readable:
            try:
                while os.read(self._wakeup_r, 512):
                    pass
            except BlockingIOError:
                pass
        return readable

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        LOG.info(
            "supervisor (pid %d) starting %d workers; SIGHUP rebuilds every worker's host "
            "cache, SIGTERM stops them within %.0fs",
            os.getpid(),
            len(self.workers),
            self.graceful_timeout,
        )
        for worker in self.workers:
            self._spawn(worker)
        while not self._stop_signals:
            now = time.monotonic()
            for worker in self.workers:
                if not worker.pid and worker.restart_at <= now:
                    self._spawn(worker)
            if self._hup:
                self._forward_hup()
            waiting = [w.restart_at - now for w in self.workers if not w.pid]
            readable = self._wait(min([1.0, *waiting]))
            self._check_ready(readable)
            self._reap(stopping=False)
        return self._shutdown()

    def _shutdown(self) -> int:
        LOG.info(
            "supervisor stopping %d workers (graceful timeout %.0fs)",
            sum(1 for w in self.workers if w.pid),
            self.graceful_timeout,
        )
        for worker in self.workers:
            self._signal(worker, signal.SIGTERM)
        seen = self._stop_signals
        deadline = time.monotonic() + self.graceful_timeout
        while any(w.pid for w in self.workers):
            left = deadline - time.monotonic()
            if left <= 0 or self._stop_signals > seen:
                for worker in self.workers:
                    if worker.pid:
                        LOG.warning("worker %d (pid %d) killed", worker.index, worker.pid)
                        self._signal(worker, signal.SIGKILL)
                self._kill_wait()
                break
            self._wait(min(left, 0.5))
            self._reap(stopping=True)
        self.sock.close()
        LOG.info("supervisor stopped")
        return 0

    def _kill_wait(self) -> None:
        for worker in self.workers:
            if worker.pid:
                with contextlib.suppress(ChildProcessError):
                    _, status = os.waitpid(worker.pid, 0)
                    how = describe_exit(status)
                    LOG.info("worker %d (pid %d) %s", worker.index, worker.pid, how)
                    if self.on_exit is not None:
                        self.on_exit(worker.pid)
                worker.pid = 0


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return f"was killed by {name}"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return f"exited with code {code}"
