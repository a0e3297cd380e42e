"""Passwords never appear in ``config show``, in logs or in a start-up error, whatever the
URL looks like (a raw ``@`` in the password included); the access log never has a token."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from allotment.cli import main
from allotment.log import RedactingFormatter, redact
from tests.conftest import LiveServer, free_port

SECRET = "s3cr@t/pass"
URLS = [
    "postgresql://user:s3cr@t-pass@db.example:5432/allotment",
    "postgresql+psycopg://user:s3cr@t@pass@db.example/allotment?sslmode=require",
    "mysql+pymysql://root:s3cr@t-pass@127.0.0.1:3306/allotment?charset=utf8mb4",
    "mysql://:s3cr@t-pass@db/allotment",
    "postgresql://user:s3cr%40t-pass@db/allotment",
    "postgresql://user:s3cretpass@db/allotment",
]


def _fragments(url: str) -> list[str]:
    password = url.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
    return [piece for piece in password.replace("%40", "@").split("@") if len(piece) >= 3]


@pytest.mark.parametrize("url", URLS)
def test_config_show_redacts_every_url_form(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--database-url", url]) == 0
    out = capsys.readouterr().out
    for piece in _fragments(url):
        assert piece not in out, out
    assert "***" in out


@pytest.mark.parametrize("url", URLS)
def test_log_lines_are_redacted(url: str) -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "cannot reach %s", (url,), None)
    record.request_id = "-"
    line = RedactingFormatter("%(message)s").format(record)
    for piece in _fragments(url):
        assert piece not in line, line
    assert redact("GET /x?token=abc123&b=1") == "GET /x?token=***&b=1"


@pytest.mark.parametrize("url", URLS[:4])
def test_start_up_error_names_no_password(url: str, tmp_path: Path) -> None:
    port = free_port()
    # A port nothing listens on: the connection fails at start-up.
    bad = url.replace("db.example:5432", f"127.0.0.1:{port}").replace(
        "127.0.0.1:3306", f"127.0.0.1:{port}"
    )
    bad = bad.replace("@db/", f"@127.0.0.1:{port}/").replace("@db.example/", f"@127.0.0.1:{port}/")
    result = subprocess.run(
        [sys.executable, "-m", "allotment.cli", "serve", "--database-url", bad,
         "--state-dir", str(tmp_path), "--port", str(free_port())],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "cannot use the database" in result.stderr
    assert "Traceback" not in result.stderr
    for piece in _fragments(url):
        assert piece not in result.stderr + result.stdout, result.stderr


def test_access_log_has_requests_and_no_token(tmp_path: Path) -> None:
    config = tmp_path / "allotment.toml"
    config.write_text("[logging]\naccess_log = true\n")
    server = LiveServer(
        f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "state", "--config", str(config),
        auth="token",
    )  # fmt: skip
    try:
        token = (tmp_path / "state" / "admin-token").read_text().strip()
        headers = {"x-auth-token": token}
        assert httpx.get(server.url + "/resource_providers", headers=headers).status_code == 200
        httpx.get(server.url + f"/traits?token={token}", headers=headers)
        httpx.get(server.url + "/resource_providers", headers={"x-auth-token": "wrong-" + token})
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "GET /resource_providers" in log and " 200" in log and " 401" in log
    assert token not in log
