"""The real ``nova-scheduler`` 34 as a test peer, started from the Nova test venv.

``nova_scheduler(...)`` writes a nova.conf naming Nova's databases, a RabbitMQ transport
and a Placement (reached by Nova's report client with ``[placement] auth_type =
admin_token``, as ``drivers/scheduler_rpc.py`` does), starts ``<venv>/bin/nova-scheduler``
with one worker, waits until its RPC server consumes the ``scheduler`` topic, and stops
it on exit. Anything else Nova reads (``[filter_scheduler]``, ``[scheduler]``, ...) comes
from ``options``, the same ``{section: {option: value}}`` that ``allotment_toml`` renders
for allotment, so both schedulers can be given one configuration.

Callers reach it with Nova's own ``SchedulerAPI`` (``drivers/scheduler_rpc.py``) on the
same transport URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# nova.service.Service.start logs this right after rpcserver.start() has declared the
# topic's queues and consumers (at DEBUG, which the conf turns on for that reason).
READY_LINE = "Join ServiceGroup membership for this service scheduler"
# Importing Nova and connecting takes a few seconds; much more on a loaded machine.
START_TIMEOUT = 180.0

Options = Mapping[str, Mapping[str, object]]


def _ini_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def nova_conf(
    *,
    transport_url: str,
    api_database: str,
    cell_database: str,
    placement_url: str,
    host: str,
    state_dir: Path,
    options: Options,
) -> str:
    """nova.conf text for a nova-scheduler on these services; ``options`` may add to or
    override any section, [DEFAULT] included."""
    sections: dict[str, dict[str, object]] = {
        "DEFAULT": {
            "transport_url": transport_url,
            "host": host,
            "state_path": str(state_dir),
            "debug": True,
        },
        "api_database": {"connection": api_database},
        "database": {"connection": cell_database},
        "placement": {"auth_type": "admin_token", "token": "admin", "endpoint": placement_url},
        "scheduler": {"workers": 1},
        "oslo_concurrency": {"lock_path": str(state_dir / "locks")},
    }
    for section, values in options.items():
        sections.setdefault(section, {}).update(values)
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_ini_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def allotment_toml(options: Options) -> str:
    """The same ``options`` as an allotment.toml (TOML values: JSON's spelling of
    strings, numbers, booleans and lists is TOML's too)."""
    lines: list[str] = []
    for section, values in options.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


@dataclass
class NovaScheduler:
    """A running nova-scheduler: its conf, its log, its process."""

    conf_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the RPC server consumes its topic; fails with the log's tail if the
        process exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"nova-scheduler exited:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nova-scheduler did not start:\n{self.log()[-4000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextmanager
def nova_scheduler(
    nova_python: Path,
    folder: Path,
    *,
    transport_url: str,
    api_database: str,
    cell_database: str,
    placement_url: str,
    host: str = "nova-sched",
    options: Options | None = None,
) -> Iterator[NovaScheduler]:
    """nova-scheduler 34 from the venv of ``nova_python``, consuming the ``scheduler``
    topic on ``transport_url``, its files in ``folder``; stopped on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    conf_path = folder / "nova-scheduler.conf"
    conf_path.write_text(
        nova_conf(
            transport_url=transport_url,
            api_database=api_database,
            cell_database=cell_database,
            placement_url=placement_url,
            host=host,
            state_dir=folder,
            options=options or {},
        )
    )
    log_path = folder / "nova-scheduler.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            # The venv's scripts name the folder it was built in (conftest moves it into
            # place afterwards): the script is run by the venv's python, not its shebang.
            [
                str(nova_python),
                str(nova_python.parent / "nova-scheduler"),
                "--config-file",
                str(conf_path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    scheduler = NovaScheduler(conf_path, log_path, process)
    try:
        scheduler.wait_ready()
        yield scheduler
    finally:
        scheduler.stop()
