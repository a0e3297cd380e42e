"""The real OpenStack Placement 16, for the tests marked ``real_placement``.

Those tests compare allotment with upstream (the same worlds and requests through both) or
drive the scheduler against upstream over HTTP. Upstream is not a service this machine
provides: it runs from a throw-away venv (``../shared/tools/run_real_placement.sh``), which
the first run installs from PyPI. So they are deselected from ``make test`` (``-m "not
real_placement"`` in pyproject's addopts) and run on their own by ``make test-upstream``:

    ALLOTMENT_REAL_PLACEMENT=install .venv/bin/pytest -m real_placement

``ALLOTMENT_UPSTREAM_URL`` uses an upstream already running (token "admin") instead of
starting one; ``ALLOTMENT_REAL_PLACEMENT_VENV`` picks another venv (default
/tmp/anchor-placement). When they are selected but upstream cannot be had they skip with
the reason, or fail under ``CI=true``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

TOOLS = Path(__file__).resolve().parents[2] / ".." / "shared" / "tools"
SCRIPT = TOOLS / "run_real_placement.sh"
VENV = Path(os.environ.get("ALLOTMENT_REAL_PLACEMENT_VENV", "/tmp/anchor-placement"))


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_placement_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a running OpenStack Placement 16 (noauth2, SQLite, one worker)."""
    given = os.environ.get("ALLOTMENT_UPSTREAM_URL")
    if given:
        yield given.rstrip("/")
        return
    if not SCRIPT.exists():
        # A tool beside the repository, not a service: without it, skip even under CI.
        pytest.skip(f"{SCRIPT} not found (../shared is not beside the repository)")
    ready = (VENV / "bin" / "gunicorn").exists() and (VENV / "bin" / "placement-manage").exists()
    if not ready and os.environ.get("ALLOTMENT_REAL_PLACEMENT") != "install":
        _unavailable(
            f"no OpenStack Placement 16 venv at {VENV}; creating one needs network access: "
            "run with ALLOTMENT_REAL_PLACEMENT=install to allow it"
        )
    folder = tmp_path_factory.mktemp("real-placement")
    port = free_port()
    started = subprocess.run(
        ["bash", str(SCRIPT), str(folder / "data"), str(port), str(VENV)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if started.returncode != 0:
        _unavailable(f"the real Placement did not start: {started.stderr[-2000:]}")
    pid = int(started.stdout.strip().splitlines()[-1])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.kill(pid, 15)
