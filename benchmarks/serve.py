"""``allotment serve`` in a subprocess for the benchmarks that measure over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextmanager
def allotment_server(
    database: Path,
    folder: Path,
    port: int,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[tuple[str, int]]:
    """Serve ``database`` (SQLite file) with ``--auth noauth`` on 127.0.0.1:``port`` until
    the block ends, with ``args`` added to the command line; yields the base URL and the
    server's pid. Output goes to ``folder/server.log``, quoted if the server does not
    start."""
    log_path = folder / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "allotment.cli",
                "serve",
                "--auth",
                "noauth",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--database-url",
                f"sqlite:///{database}",
                "--state-dir",
                str(folder / "state"),
                *args,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, log_path)
            yield url, process.pid
        finally:
            process.terminate()
            process.wait(30)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 300
    while True:
        try:
            _OPENER.open(url + "/", timeout=2).close()
            return
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text()[-3000:]) from None
            time.sleep(0.2)
