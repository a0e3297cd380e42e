"""The ``allotment`` command: ``serve``, ``db upgrade``, ``token create|list|revoke``,
``config show``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import sqlalchemy

from allotment import __version__, log
from allotment.config import Settings, load_settings, to_toml
from allotment.errors import ConfigError

LOG = logging.getLogger("allotment")


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
    create.add_argument("--project", help="project id the token is scoped to")
    create.add_argument("--user", help="user id (default: the name)")
    for name, text in (("list", "list tokens (never their values)"), ("revoke", "revoke by name")):
        cmd = token_sub.add_parser(name, help=text)
        _common(cmd)
        if name == "revoke":
            cmd.add_argument("name")
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


def _serve(settings: Settings) -> int:
    import uvicorn

    from allotment import httpserver
    from allotment.app import SETTINGS_ENV, build_services, create_app

    services = build_services(settings)
    if settings.auth_strategy == "noauth":
        LOG.warning(
            'AUTHENTICATION IS OFF (--auth noauth): any caller presenting the token "admin" '
            "is an administrator. Use this only for local development and conformance runs."
        )
    elif services.tokens is not None:
        path = services.tokens.ensure_bootstrap(settings.server.state_dir)
        LOG.info("bootstrap admin token: %s (mode 0600)", path.resolve())
    LOG.info(
        "allotment %s serving on http://%s:%d (database: %s; scheduler uses placement %s)",
        __version__,
        settings.server.host,
        settings.server.port,
        log.redact(services.db.url),
        log.redact(settings.placement_client.url) or "in-process",
    )
    options: dict[str, Any] = {
        "host": settings.server.host,
        "port": settings.server.port,
        "log_config": None,
        "access_log": settings.logging.access_log,
        "server_header": False,
        "http": httpserver.configure(settings.limits),
        "timeout_graceful_shutdown": 10,
    }
    if settings.server.workers > 1:
        services.stop()
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        uvicorn.run(
            "allotment.app:app_from_env", factory=True, workers=settings.server.workers, **options
        )
    else:
        uvicorn.run(create_app(services), **options)
    return 0


def _db_upgrade(settings: Settings) -> int:
    from allotment.db import migrate
    from allotment.db.database import Database

    db = Database(settings.database_url)
    migrate.upgrade(db)
    LOG.info("database schema is at revision %s", migrate.current_revision(db))
    db.dispose()
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from allotment.auth.tokens import TokenStore
    from allotment.db import migrate
    from allotment.db.database import Database

    db = Database(settings.database_url)
    migrate.prepare(db)
    store = TokenStore(db)
    if args.token_command == "create":
        token = store.create(args.name, args.role, user_id=args.user, project_id=args.project)
        print(token)
    elif args.token_command == "list":
        for record in store.list():
            roles = ",".join(sorted(record.roles))
            print(
                f"{record.name}\tuser={record.user_id}\tproject={record.project_id}\troles={roles}"
            )
    else:
        if not store.revoke(args.name):
            print(f"no token named {args.name}", file=sys.stderr)
            return 1
    db.dispose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        log.setup(settings.logging.level, access_log=settings.logging.access_log)
        if args.command == "serve":
            return _serve(settings)
        if args.command == "db":
            return _db_upgrade(settings)
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
