"""A real OpenStack Keystone for tests, and the real OpenStack Placement 16 behind it:
installed from PyPI into one throw-away venv, Keystone bootstrapped once, each served on a
free local port.

The venv and a bootstrapped template (SQLite database, fernet and credential keys, the admin)
are cached under ``/tmp/allotment-keystone-<hash of keystone_constraints.txt>``, so a warm
start is a copy, the server start and pointing the catalog's identity endpoints at this
run's port: seconds. A cold one installs (minutes) and says what it is doing.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

CONSTRAINTS = Path(__file__).with_name("keystone_constraints.txt")
# The real Placement shares the venv: one install, one cache for both peers.
PACKAGES = ("keystone", "openstack-placement")
ADMIN_PASSWORD = "allotment-test-admin"
# Long enough for a request or two, short enough for a test to wait one out.
TOKEN_EXPIRATION_S = 40
# The port the template's catalog names until a run points it at its own.
TEMPLATE_PORT = 5000
# Serves keystone's WSGI application with the small threaded server its venv has (Werkzeug).
# The port comes in the environment: keystone parses the command line as its own.
SERVER_SCRIPT = """
import os
from werkzeug.serving import run_simple
from keystone.wsgi.api import application
run_simple("127.0.0.1", int(os.environ["KEYSTONE_PORT"]), application, threaded=True)
"""
# Placement's WSGI application (it reads $OS_PLACEMENT_CONFIG_DIR/placement.conf) in one
# thread, as one sync gunicorn worker would serve it: its SQLite file has one writer.
PLACEMENT_SCRIPT = """
import os
from werkzeug.serving import run_simple
from placement.wsgi.api import application
run_simple("127.0.0.1", int(os.environ["PLACEMENT_PORT"]), application, threaded=False)
"""


def progress(message: str) -> None:
    print(f"[keystone] {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    digest = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()[:12]
    return Path(f"/tmp/allotment-keystone-{digest}")


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One installer at a time (parallel test sessions share the cache)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], what: str, **kwargs: object) -> None:
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr[-3000:]}")
    progress(f"{what}: {time.monotonic() - started:.1f} s")


def write_config(folder: Path, port: int) -> Path:
    conf = folder / "keystone.conf"
    conf.write_text(
        f"""[DEFAULT]
log_file = {folder / "keystone.log"}
[database]
connection = sqlite:///{folder / "keystone.sqlite"}
[token]
provider = fernet
expiration = {TOKEN_EXPIRATION_S}
[fernet_tokens]
key_repository = {folder / "fernet-keys"}
[credential]
key_repository = {folder / "credential-keys"}
[identity]
# bcrypt's cheapest cost: test users log in on every token refresh.
password_hash_rounds = 4
[cache]
enabled = false
[oslo_policy]
enforce_new_defaults = true
"""
    )
    return conf


def _manage(venv: Path, conf: Path, *args: str) -> list[str]:
    return [str(venv / "bin" / "keystone-manage"), "--config-file", str(conf), *args]


def ensure_installed() -> tuple[Path, Path]:
    """The venv and the bootstrapped template folder, created on first use."""
    root = cache_root()
    venv, template = root / "venv", root / "template"
    with _locked(root):
        if not (venv / ".installed").exists():
            progress(f"installing keystone and placement into {venv} (first use; a few minutes)")
            shutil.rmtree(venv, ignore_errors=True)
            _run([sys.executable, "-m", "venv", str(venv)], "venv")
            pip = [str(venv / "bin" / "pip"), "install", "-q", "-c", str(CONSTRAINTS)]
            _run([*pip, *PACKAGES], "pip install " + " ".join(PACKAGES))
            (venv / ".installed").touch()
        if not (template / ".bootstrapped").exists():
            progress(f"creating the database, keys and admin in {template}")
            shutil.rmtree(template, ignore_errors=True)
            template.mkdir()
            conf = write_config(template, TEMPLATE_PORT)
            _run(_manage(venv, conf, "db_sync"), "keystone-manage db_sync")
            owner = ["--keystone-user", "root", "--keystone-group", "root"]
            for setup in ("fernet_setup", "credential_setup"):
                _run(_manage(venv, conf, setup, *owner), f"keystone-manage {setup}")
            url = f"http://127.0.0.1:{TEMPLATE_PORT}/v3"
            bootstrap = ["bootstrap", "--bootstrap-password", ADMIN_PASSWORD]
            for interface in ("admin", "public", "internal"):
                bootstrap += [f"--bootstrap-{interface}-url", url]
            bootstrap += ["--bootstrap-region-id", "RegionOne"]
            _run(_manage(venv, conf, *bootstrap), "keystone-manage bootstrap")
            (template / ".bootstrapped").touch()
    return venv, template


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class Keystone:
    url: str
    folder: Path
    process: subprocess.Popen[bytes]

    @property
    def auth_url(self) -> str:
        return self.url + "/v3"

    def stop(self) -> None:
        _stop(self.process)


def start(folder: Path, port: int) -> Keystone:
    """A Keystone of its own in ``folder`` on ``port``, with the admin bootstrapped."""
    venv, template = ensure_installed()
    shutil.copytree(template, folder, dirs_exist_ok=True)
    conf = write_config(folder, port)
    url = f"http://127.0.0.1:{port}"
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [str(venv / "bin" / "python"), "-c", SERVER_SCRIPT],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            "OS_KEYSTONE_CONFIG_FILES": str(conf),
            "KEYSTONE_PORT": str(port),
            "PATH": "/usr/bin:/bin",
        },
    )
    keystone = Keystone(url, folder, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"keystone exited: {(folder / 'server.log').read_text()[-3000:]}")
        try:
            answered = httpx.get(f"{url}/v3", timeout=2).status_code == 200
        except httpx.HTTPError:
            answered = False
        if answered:
            _point_catalog_at(url)
            progress(f"serving on {url}")
            return keystone
        time.sleep(0.2)
    keystone.stop()
    raise RuntimeError(f"keystone did not answer: {(folder / 'server.log').read_text()[-3000:]}")


@dataclass
class Placement:
    """The real OpenStack Placement 16, ``[api] auth_strategy = keystone``."""

    url: str
    folder: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        _stop(self.process)


def start_placement(
    folder: Path, port: int, keystone: Keystone, *, username: str, password: str
) -> Placement:
    """OpenStack Placement 16 on ``port`` with a SQLite database in ``folder``, validating
    tokens with keystonemiddleware against ``keystone`` as the service user ``username``
    (project ``service``, default domain)."""
    venv, _ = ensure_installed()
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "placement.conf"
    conf.write_text(
        f"""[DEFAULT]
log_file = {folder / "placement.log"}
[api]
auth_strategy = keystone
[placement_database]
connection = sqlite:///{folder / "placement.sqlite"}
[keystone_authtoken]
www_authenticate_uri = {keystone.auth_url}
auth_url = {keystone.auth_url}
auth_type = password
username = {username}
password = {password}
project_name = service
user_domain_id = default
project_domain_id = default
# Validate every token afresh: the tests expire and revoke them.
token_cache_time = -1
"""
    )
    _run(
        [str(venv / "bin" / "placement-manage"), "--config-file", str(conf), "db", "sync"],
        "placement-manage db sync",
    )
    url = f"http://127.0.0.1:{port}"
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [str(venv / "bin" / "python"), "-c", PLACEMENT_SCRIPT],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            "OS_PLACEMENT_CONFIG_DIR": str(folder),
            "PLACEMENT_PORT": str(port),
            "PATH": "/usr/bin:/bin",
        },
    )
    placement = Placement(url, folder, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"placement exited: {(folder / 'server.log').read_text()[-3000:]}")
        try:
            # The root document needs no token; anything else is a 401 without one.
            answered = httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            answered = False
        if answered:
            progress(f"placement serving on {url}")
            return placement
        time.sleep(0.2)
    placement.stop()
    raise RuntimeError(f"placement did not answer: {(folder / 'server.log').read_text()[-3000:]}")


def _point_catalog_at(url: str) -> None:
    """Make the catalog's identity endpoints name this run's port (as the admin)."""
    password = {"user": {"name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": password},
            "scope": {"system": {"all": True}},
        }
    }
    with httpx.Client(base_url=f"{url}/v3", timeout=60) as client:
        issued = client.post("/auth/tokens", json=body)
        issued.raise_for_status()
        client.headers["x-auth-token"] = issued.headers["x-subject-token"]
        for endpoint in client.get("/endpoints").raise_for_status().json()["endpoints"]:
            patch = {"endpoint": {"url": f"{url}/v3"}}
            client.patch(f"/endpoints/{endpoint['id']}", json=patch).raise_for_status()
