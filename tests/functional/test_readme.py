"""README's scheduling example, run as written against a live ``allotment serve`` (token
auth, state in ``./var`` as ``make run`` has it), with one change: the port, a free one
instead of 8778 (``127.0.0.1:8778`` in the text, and ``ALLOTMENT_SERVER__PORT`` for the
commands that take their server from the configuration)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- tests/functional/test_readme.py runs this block as written"


def example() -> str:
    text = README.read_text()
    after = text[text.index(MARKER) :]
    found = re.search(r"```sh\n(.*?)```", after, re.S)
    assert found is not None, "the marked block is gone from README.md"
    return found.group(1)


def test_the_scheduling_example_works_as_written(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("curl is needed to run README's example")
        pytest.skip("curl is not installed; README's example uses it")
    server = LiveServer(
        f"sqlite:///{tmp_path / 'var' / 'allotment.sqlite'}", tmp_path / "var", auth="token"
    )
    script = example().replace("127.0.0.1:8778", f"127.0.0.1:{server.port}")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ALLOTMENT_SERVER__PORT": str(server.port),
        "COLUMNS": "200",
    }
    env.pop("ALLOTMENT_TOKEN", None)
    out = tmp_path / "out.txt"
    try:
        with out.open("w") as sink:
            shell = subprocess.Popen(
                ["bash", "-e", "-c", script],
                cwd=tmp_path,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = shell.wait(180)
            finally:
                # The example leaves the agent running in the background.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(shell.pid, signal.SIGTERM)
    finally:
        server.stop()
    text = out.read_text()
    assert code == 0, text
    host = socket.gethostname()
    assert host in text  # hosts list
    assert '"selections"' in text and f'"host":"{host}"' in text.replace(" ", "")
    assert "m1.small" in text and "m1.large" in text  # capacity
    assert "funnel" in text and "fits" in text  # explain
    assert "Traceback" not in text
