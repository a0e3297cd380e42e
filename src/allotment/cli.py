"""The ``allotment`` command: ``serve``, ``db upgrade``, ``token create|list|revoke``,
``config show``, ``sim run|compare``; the operator commands (``hosts``, ``explain``,
``capacity``, ``audit``, ``agent``) live in ``allotment.commands``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import sqlalchemy

from allotment import __version__, log
from allotment.commands import main as commands
from allotment.config import Settings, load_settings, to_toml
from allotment.errors import ConfigError

LOG = logging.getLogger("allotment")
# uvicorn's exit code when the application did not start.
STARTUP_FAILED = 3


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--database-url", metavar="URL", help="SQLAlchemy database URL")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="allotment", description=__doc__)
    parser.add_argument("--version", action="version", version=f"allotment {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the Placement and scheduler APIs")
    _common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8778)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument(
        "--auth", choices=["token", "noauth", "keystone"], help="[auth] strategy (default token)"
    )
    serve.add_argument("--state-dir", help="folder for the default database and the admin token")
    serve.add_argument(
        "--placement-url",
        metavar="URL",
        help="schedule against this Placement over HTTP instead of the embedded one",
    )
    serve.add_argument(
        "--placement-token",
        metavar="TOKEN",
        help="X-Auth-Token for --placement-url (visible to other local users: prefer "
        "ALLOTMENT_PLACEMENT_CLIENT__TOKEN or [placement_client] token_file)",
    )

    serve.add_argument(
        "--nova-config",
        metavar="FILE",
        help="also serve Nova's scheduler RPC API on the transport this nova.conf names "
        "(same as [nova] config_file)",
    )

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="run schema migrations up to the latest")
    _common(upgrade)

    config = sub.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser(
        "show", help="print the effective configuration (file + environment + flags) as TOML"
    )
    _common(show)

    token = sub.add_parser("token", help="API tokens (for --auth token)")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token and print it once")
    _common(create)
    create.add_argument("name", help="a name to recognise the token by")
    create.add_argument(
        "--role", action="append", required=True, choices=["admin", "service", "reader", "member"]
    )
    scope = create.add_mutually_exclusive_group()
    scope.add_argument("--project", help="project id the token is scoped to")
    scope.add_argument(
        "--system",
        choices=["all"],
        help="scope the token to the system, as a Keystone system-scoped token "
        "(e.g. --system all --role reader: a system reader)",
    )
    create.add_argument("--user", help="user id (default: the name)")
    for name, text in (("list", "list tokens (never their values)"), ("revoke", "revoke by name")):
        cmd = token_sub.add_parser(name, help=text)
        _common(cmd)
        if name == "revoke":
            cmd.add_argument("name")

    from allotment.sim.cli import add_parser as add_sim

    add_sim(sub)
    commands.register(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    server: dict[str, Any] = {}
    for key in ("host", "port", "workers", "state_dir"):
        value = getattr(args, key, None)
        if value is not None:
            server[key] = value
    auth: dict[str, Any] = {}
    if getattr(args, "auth", None):
        # Both spellings, so the flag wins over a file's older [server] auth too.
        auth["strategy"] = server["auth"] = args.auth
    database = {"url": args.database_url} if getattr(args, "database_url", None) else {}
    placement_client: dict[str, Any] = {}
    if getattr(args, "placement_url", None):
        placement_client["url"] = args.placement_url
    if getattr(args, "placement_token", None):
        placement_client["token"] = args.placement_token
    nova = {"config_file": args.nova_config} if getattr(args, "nova_config", None) else {}
    return load_settings(
        args.config,
        {
            "server": server,
            "auth": auth,
            "database": database,
            "placement_client": placement_client,
            "nova": nova,
        },
    )


def _server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options, the same for one process and for every worker."""
    from allotment import httpserver

    return {
        "host": settings.server.host,
        "port": settings.server.port,
        "log_config": None,
        # Our own access line (log.ACCESS, [logging] access_log) replaces uvicorn's.
        "access_log": False,
        "server_header": False,
        "http": httpserver.configure(settings.limits),
        "timeout_graceful_shutdown": settings.server.graceful_timeout,
    }


def _serve(settings: Settings) -> int:
    import uvicorn

    from allotment.app import build_services, create_app

    services = build_services(settings)
    if settings.auth_strategy == "noauth":
        LOG.warning(
            'AUTHENTICATION IS OFF (--auth noauth): any caller presenting the token "admin" '
            "is an administrator. Use this only for local development and conformance runs."
        )
    elif services.tokens is not None:
        bootstrap = services.tokens.ensure_bootstrap(settings.server.state_dir)
        LOG.log(logging.WARNING if bootstrap.stale_file else logging.INFO, bootstrap.describe())
    LOG.info(
        "allotment %s serving on http://%s:%d (database: %s; scheduler uses placement %s)",
        __version__,
        settings.server.host,
        settings.server.port,
        log.redact(services.db.url),
        log.redact(settings.placement_client.url) or "in-process",
    )
    if settings.server.workers > 1:
        # Start-up was checked above (database, schema, plugins, policy); the workers
        # build their own services after the fork, so nothing here may stay open.
        services.stop()
        return _serve_workers(settings)
    uvicorn.run(create_app(services), **_server_options(settings))
    return 0


def _serve_workers(settings: Settings) -> int:
    from allotment import metrics, supervisor

    sock = supervisor.bind_socket(settings.server.host, settings.server.port)
    parent = os.getpid()
    # Before the fork: the workers' metric files go to a fresh directory a scrape sums.
    metrics.prepare_multiprocess(settings.server.state_dir)

    def worker_main(index: int, sock: socket.socket, ready: Callable[[], None]) -> int:
        return _worker(settings, index, parent, sock, ready)

    return supervisor.Supervisor(
        sock,
        settings.server.workers,
        worker_main,
        graceful_timeout=settings.server.graceful_timeout,
        on_exit=metrics.worker_exited,
    ).run()


def _stop_starting_worker(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _worker(
    settings: Settings,
    index: int,
    parent: int,
    sock: socket.socket,
    ready: Callable[[], None],
) -> int:
    """One worker process, forked by the supervisor with ``settings`` in memory: the same
    logging and services a single process has, served on the inherited socket."""
    import uvicorn

    from allotment import supervisor
    from allotment.app import build_services, create_app

    log.setup(
        settings.logging.level, access_log=settings.logging.access_log, fmt=settings.logging.format
    )
    signal.signal(signal.SIGTERM, _stop_starting_worker)
    services = build_services(settings)
    options = _server_options(settings)
    # Leave part of the supervisor's deadline for the shutdown of the services.
    options["timeout_graceful_shutdown"] = settings.server.graceful_timeout * 0.75
    server = uvicorn.Server(uvicorn.Config(create_app(services), **options))

    def stop(*_: object) -> None:
        server.should_exit = True

    # uvicorn handles SIGTERM itself while serving and raises it again when done: this
    # handler covers the moments before and after.
    signal.signal(signal.SIGTERM, stop)
    supervisor.ParentWatch(parent, stop, settings.server.graceful_timeout).start()

    def report_ready() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if server.started:
            LOG.info("worker %d (pid %d) serving", index, os.getpid())
            ready()

    threading.Thread(target=report_ready, name="worker-ready", daemon=True).start()
    server.run(sockets=[sock])
    return 0 if server.started else STARTUP_FAILED


def _db_upgrade(settings: Settings) -> int:
    from allotment.db import migrate
    from allotment.db.database import Database

    db = Database(settings.database_url)
    migrate.upgrade(db)
    LOG.info("database schema is at revision %s", migrate.current_revision(db))
    db.dispose()
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from allotment.auth.tokens import BOOTSTRAP_NAME, TokenStore
    from allotment.db import migrate
    from allotment.db.database import Database

    db = Database(settings.database_url)
    migrate.prepare(db)
    store = TokenStore(db)
    if args.token_command == "create":
        if args.name == BOOTSTRAP_NAME:
            print(
                f"allotment: the name {BOOTSTRAP_NAME} is kept for the token 'allotment serve' "
                "creates; choose another name (revoke it to have the next start make a new one)",
                file=sys.stderr,
            )
            return 2
        token = store.create(
            args.name,
            args.role,
            user_id=args.user,
            project_id=args.project,
            system_scope=args.system,
        )
        print(token)
    elif args.token_command == "list":
        for record in store.list():
            roles = ",".join(sorted(record.roles))
            scope = (
                f"system={record.system_scope}"
                if record.system_scope
                else f"project={record.project_id}"
            )
            print(f"{record.name}\tuser={record.user_id}\t{scope}\troles={roles}")
    else:
        if not store.revoke(args.name):
            print(f"no token named {args.name}", file=sys.stderr)
            return 1
    db.dispose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "sim":
        from allotment.sim.cli import main as sim_main

        return sim_main(args)
    try:
        settings = _settings(args)
        log.setup(
            settings.logging.level,
            access_log=settings.logging.access_log,
            fmt=settings.logging.format,
        )
        if args.command == "serve":
            return _serve(settings)
        if args.command == "db":
            return _db_upgrade(settings)
        if args.command in commands.COMMANDS:
            return commands.run(args, settings)
        if args.command == "config":
            print(to_toml(settings, redact=log.redact), end="")
            return 0
        return _token(args, settings)
    except ConfigError as exc:
        print(f"allotment: {exc}", file=sys.stderr)
        return 2
    except sqlalchemy.exc.SQLAlchemyError as exc:
        # At start-up: a clear line, never the URL's password (drivers may echo the URL).
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        url = log.redact(settings.database_url)
        print(
            f"allotment: cannot use the database {url}: {log.redact(reason[0] if reason else '')}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
