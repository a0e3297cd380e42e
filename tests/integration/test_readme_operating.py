"""README's "Operating it" examples, run as written: its TOML is the server's
configuration file, and each line of its shell block runs in bash against a live
``allotment serve`` (the README's address replaced by the test server's)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI, LiveServer
from tests.fleet import Fleet

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"
ADDRESS = "http://127.0.0.1:8778"


def _section() -> str:
    text = README.read_text()
    start = text.index("## Operating it")
    return text[start : text.index("\n## ", start + 1)]


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", _section(), re.DOTALL)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    if shutil.which("curl") is None:
        if IN_CI:
            pytest.fail("curl is needed to run README's examples")
        pytest.skip("curl is not installed")
    (toml,) = _blocks("toml")
    config = tmp_path / "allotment.toml"
    config.write_text(toml)
    live = LiveServer(
        f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "state", "--config", str(config),
        wait=False,
    )  # fmt: skip
    try:
        live.wait_ready(timeout=90)
        yield live
    finally:
        live.stop()


def test_the_operating_examples_run_as_written(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as client:
        Fleet(client).host("cn1", vcpus=8, ram=16384, disk=200)
    (shell,) = _blocks("sh")
    outputs = []
    for line in shell.strip().splitlines():
        command = line.replace(ADDRESS, server.url)
        done = subprocess.run(
            ["bash", "-c", command],
            env={"TOKEN": "admin", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, (line, done.stderr)
        outputs.append(done.stdout)
    alive, ready, capacity = outputs
    assert json.loads(alive) == {"status": "alive"}
    assert json.loads(ready)["status"] == "ready"
    lines = set(capacity.splitlines())
    # cn1 (no availability zone: the default one) has room for 8 m1.small and no VGPU.
    assert 'allotment_capacity_instances{az="nova",flavor="m1.small"} 8.0' in lines
    assert 'allotment_capacity_instances{az="nova",flavor="g1.gpu"} 0.0' in lines
