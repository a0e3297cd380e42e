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

import httpx
import pytest

from tests.conftest import IN_CI, LiveServer
from tests.fleet import Fleet

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


@contextlib.contextmanager
def rabbit_vhost(prefix: str) -> Iterator[str]:
    """A transport URL on the machine's RabbitMQ, in a new vhost named ``prefix`` and a
    uuid, deleted on exit."""
    if shutil.which("rabbitmqctl") is None:
        _unavailable("rabbitmqctl is not installed: the RabbitMQ tests cannot make a vhost")
    vhost = f"{prefix}{uuid.uuid4().hex[:10]}"
    try:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"RabbitMQ at {RABBIT} cannot make a vhost: {exc}")
    try:
        yield f"rabbit://guest:guest@{RABBIT}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def rabbit_url() -> Iterator[str]:
    """A transport URL on the machine's RabbitMQ, in a vhost of this test's own."""
    with rabbit_vhost("allotment-test-") as url:
        yield url


# -- a cloud: allotment serving Nova's RPC API, hosts, and Nova's SchedulerAPI -------------

CELL = "3d6ea4a4-3a2b-4d5e-9a8b-6f1c2d3e4f50"


def flavor(vcpus: int = 2, memory_mb: int = 2048, root_gb: int = 10) -> dict[str, Any]:
    return {
        "$obj": "Flavor",
        "name": f"f{vcpus}",
        "flavorid": str(vcpus),
        "vcpus": vcpus,
        "memory_mb": memory_mb,
        "root_gb": root_gb,
        "ephemeral_gb": 0,
        "swap": 0,
        "extra_specs": {},
    }


def spec(vcpus: int = 2, **fields: Any) -> dict[str, Any]:
    return {
        "$obj": "RequestSpec",
        "project_id": "p1",
        "user_id": "u1",
        "flavor": flavor(vcpus),
        "num_instances": 1,
        "is_bfv": False,
        "scheduler_hints": {},
        **fields,
    }


def context(**extra: Any) -> dict[str, Any]:
    return {
        "user_id": "u1",
        "project_id": "p1",
        "roles": ["member", "reader"],
        "request_id": f"req-{uuid.uuid4()}",
        "global_request_id": f"req-{uuid.uuid4()}",
        **extra,
    }


class Cloud:
    def __init__(
        self, server: LiveServer, fleet: Fleet, nova: NovaDriver, url: str, database: Path
    ) -> None:
        self.server, self.fleet, self.nova, self.url = server, fleet, nova, url
        self.database = database

    def rpc(
        self,
        *calls: dict[str, Any],
        upgrade_level: str | None = None,
        rpc_response_timeout: int = 30,
    ) -> list[Any]:
        request = {
            "transport_url": self.url,
            "placement_url": self.server.url,
            "upgrade_level": upgrade_level,
            "rpc_response_timeout": rpc_response_timeout,
            "calls": calls,
        }
        answers: list[Any] = self.nova.run(request, timeout=180)
        return answers

    def log(self) -> str:
        return self.server.log_path.read_text()


@pytest.fixture
def cloud(tmp_path: Path, rabbit_url: str, nova_python: Path) -> Iterator[Cloud]:
    nova_conf = tmp_path / "nova.conf"
    nova_conf.write_text(f"[DEFAULT]\ntransport_url = {rabbit_url}\nhost = sched-test\n")
    settings = tmp_path / "allotment.toml"
    settings.write_text(f'[nova]\ncell_uuid = "{CELL}"\n[scheduler]\nmax_attempts = 3\n')
    database = tmp_path / "live.sqlite"
    server = LiveServer(
        f"sqlite:///{database}",
        tmp_path / "state",
        "--config",
        str(settings),
        "--nova-config",
        str(nova_conf),
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            fleet = Fleet(http)
            for name in ("h1", "h2", "h3"):
                fleet.host(name, vcpus=8, ram=16384, disk=200)
            nova = NovaDriver(nova_python, "scheduler_rpc.py")
            yield Cloud(server, fleet, nova, rabbit_url, database)
    finally:
        server.stop()


def selections(answer: dict[str, Any]) -> list[list[dict[str, Any]]]:
    assert "result" in answer, answer
    return [[s["fields"] for s in choices] for choices in answer["result"]]
