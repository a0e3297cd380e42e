"""Nova 34 as a test peer: a throw-away venv, driver scripts, RabbitMQ vhosts.

allotment never imports Nova, and neither does this test process: tests talk to Nova
through the driver scripts in ``drivers/``, run with the Nova venv's python (JSON on
stdin, JSON on stdout). The venv is installed from PyPI on first use, every package
pinned by ``constraints.txt`` (no resolution, the same versions every time), into
``/tmp/allotment-nova-<hash of constraints.txt and the python version>``; later runs
reuse it. Under ``CI=true`` nothing here skips: a venv that cannot be installed or a
RabbitMQ that cannot be reached fails the tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

HERE = Path(__file__).resolve().parent
CONSTRAINTS = HERE / "constraints.txt"
DRIVERS = HERE / "drivers"
NOVA_VERSION = "34.0.0"
RABBIT = os.environ.get("ALLOTMENT_TEST_RABBIT", "127.0.0.1:5672")
# Installing the venv cold (about 4 minutes here) happens inside the first test's setup.
INSTALL_TIMEOUT = 1200


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def venv_path() -> Path:
    """Where the Nova venv for these constraints and this python lives."""
    digest = hashlib.sha256(CONSTRAINTS.read_bytes())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return Path(f"/tmp/allotment-nova-{digest.hexdigest()[:12]}")


def _say(config: pytest.Config, text: str) -> None:
    """Progress on the terminal even while pytest captures output."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"[nova venv] {text}", file=sys.stderr, flush=True)


def _install(config: pytest.Config, venv: Path) -> None:
    """Create the venv aside and move it into place when complete, so a broken install
    is never mistaken for a ready one."""
    staging = venv.with_name(venv.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    _say(config, f"creating {venv} (nova=={NOVA_VERSION}, {CONSTRAINTS.name} pinned)")
    subprocess.run([base, "-m", "venv", str(staging)], check=True)
    pip = [str(staging / "bin" / "python"), "-m", "pip"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    _say(config, "installing the pinned packages from PyPI (a few minutes on a cold cache)")
    process = subprocess.Popen(
        [*pip, "install", "--no-deps", "--progress-bar", "off", "-r", str(CONSTRAINTS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        tail = [*tail[-30:], line]
        if line.startswith(("Collecting", "Successfully installed")):
            _say(config, line.strip()[:160])
    if process.wait() != 0:
        raise RuntimeError("pip install failed:\n" + "".join(tail))
    check = subprocess.run(
        [str(staging / "bin" / "python"), "-c", "import nova.objects, nova.scheduler.rpcapi"],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        raise RuntimeError(f"nova does not import in the new venv: {check.stderr[-2000:]}")
    # A venv's scripts name their folder; the python binary itself does not care.
    staging.rename(venv)


@pytest.fixture(scope="session")
def nova_python(pytestconfig: pytest.Config) -> Path:
    """The python of a venv with nova==34.0.0 installed (created on first use)."""
    venv = venv_path()
    started = time.monotonic()
    python = venv / "bin" / "python"
    if not python.exists():
        with open(f"{venv}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be installing it
            if not python.exists():
                try:
                    _install(pytestconfig, venv)
                except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
                    _unavailable(f"could not install nova {NOVA_VERSION} into {venv}: {exc}")
        _say(pytestconfig, f"ready in {time.monotonic() - started:.0f} s")
    else:
        _say(pytestconfig, f"{venv} reused ({time.monotonic() - started:.2f} s)")
    return python


class NovaDriver:
    """Runs one driver script with the Nova venv's python: JSON in, JSON out."""

    def __init__(self, python: Path, script: str) -> None:
        self.python = python
        self.script = DRIVERS / script

    def run(self, payload: Any, *, timeout: float = 120, env: dict[str, str] | None = None) -> Any:
        done = subprocess.run(
            [str(self.python), "-W", "ignore", str(self.script)],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{self.script.name} exited {done.returncode}:\n{done.stderr[-4000:]}"
            )
        return json.loads(done.stdout)


@pytest.fixture(scope="session")
def nova_objects(nova_python: Path) -> NovaDriver:
    """Builds real Nova objects (``obj_to_primitive``) and reads primitives back."""
    return NovaDriver(nova_python, "objects.py")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def rabbit_url() -> Iterator[str]:
    """A transport URL on the machine's RabbitMQ, in a vhost of this test's own."""
    if shutil.which("rabbitmqctl") is None:
        _unavailable("rabbitmqctl is not installed: the RabbitMQ tests cannot make a vhost")
    vhost = f"allotment-test-{uuid.uuid4().hex[:10]}"
    try:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"RabbitMQ at {RABBIT} cannot make a vhost: {exc}")
    try:
        yield f"rabbit://guest:guest@{RABBIT}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)
