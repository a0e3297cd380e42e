"""How the operator commands reach allotment: a running server over HTTP (``--url``, a
token from ``--token``, ``--token-file`` or ``ALLOTMENT_TOKEN``), or, with
``--database-url``, the database itself through the same application run in-process (the
same code answers, with an internal administrator as the caller)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from allotment.config import Settings

MICROVERSION = "placement 1.39"


class CommandError(Exception):
    """What went wrong, in a sentence for the operator (exit status 1)."""


def add_connection_options(parser: argparse.ArgumentParser, *, local: bool = True) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--url", help="the server (default: http://[server] host:port from the configuration)"
    )
    parser.add_argument("--token", help="X-Auth-Token (prefer --token-file or ALLOTMENT_TOKEN)")
    parser.add_argument("--token-file", metavar="FILE", help="a file holding the token")
    if local:
        parser.add_argument(
            "--database-url",
            metavar="URL",
            help="read the database directly instead of asking a server",
        )
    parser.add_argument(
        "--format", choices=["table", "json"], default="table", help="output (default: table)"
    )


def token_of(args: argparse.Namespace, settings: Settings) -> str | None:
    """--token, else --token-file, else ALLOTMENT_TOKEN, else the bootstrap admin token
    in the state directory when this user can read it."""
    if getattr(args, "token", None):
        return str(args.token)
    path = getattr(args, "token_file", None)
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise CommandError(f"cannot read the token file {path}: {exc.strerror}") from None
    if os.environ.get("ALLOTMENT_TOKEN"):
        return os.environ["ALLOTMENT_TOKEN"]
    bootstrap = settings.server.state_dir / "admin-token"
    try:
        return bootstrap.read_text().strip()
    except OSError:
        return None


class Api:
    """JSON calls to the Placement API (root) and the scheduler API (``scheduler``)."""

    def __init__(self, client: Any, scheduler_prefix: str, where: str) -> None:
        self.client = client
        self.prefix = scheduler_prefix.rstrip("/")
        self.where = where

    def call(
        self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200,)
    ) -> Any:
        try:
            response = self.client.request(
                method,
                path,
                json=body,
                headers={"openstack-api-version": MICROVERSION, "accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot reach allotment at {self.where}: {exc}") from None
        if response.status_code not in ok:
            raise CommandError(_error(method, path, response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def scheduler(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call(method, self.prefix + path, body, **kw)


def _error(method: str, path: str, response: httpx.Response) -> str:
    detail = response.text.strip()
    try:
        errors = response.json().get("errors") or []
        if errors:
            detail = errors[0].get("detail") or errors[0].get("title") or detail
    except ValueError:
        pass
    hint = ""
    if response.status_code == 401:
        hint = " (give a token: --token-file, ALLOTMENT_TOKEN or --token)"
    return f"{method} {path}: HTTP {response.status_code}: {detail}{hint}"


@contextmanager
def connect(args: argparse.Namespace, settings: Settings) -> Iterator[Api]:
    """An Api over HTTP, or over the in-process application with ``--database-url``."""
    prefix = settings.server.scheduler_prefix
    if getattr(args, "database_url", None):
        from starlette.testclient import TestClient

        from allotment.app import build_services, create_app

        local = settings.model_copy(deep=True)
        local.database.url = args.database_url
        local.auth.strategy = "noauth"  # the caller holds the database already
        local.server.auth = None
        services = build_services(local)
        try:
            with TestClient(create_app(services), headers={"x-auth-token": "admin"}) as client:
                yield Api(client, prefix, "the database")
        finally:
            services.stop()
        return
    url = (args.url or f"http://{settings.server.host}:{settings.server.port}").rstrip("/")
    headers = {}
    token = token_of(args, settings)
    if token:
        headers["x-auth-token"] = token
    with httpx.Client(base_url=url, headers=headers, timeout=60.0) as client:
        yield Api(client, prefix, url)
