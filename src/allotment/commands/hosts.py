"""``allotment hosts list|show|delete``: which hosts the scheduler knows, up or down."""

from __future__ import annotations

import argparse
from typing import Any

from allotment.commands import render
from allotment.commands.api import Api, CommandError


def register(sub: Any, connection: Any) -> None:
    hosts = sub.add_parser("hosts", help="the hosts the scheduler knows")
    actions = hosts.add_subparsers(dest="hosts_command", required=True)
    listing = actions.add_parser("list", help="every host: up, disabled, instances")
    connection(listing)
    listing.add_argument("--down", action="store_true", help="only hosts that are down")
    show = actions.add_parser("show", help="one host: its nodes and last report")
    connection(show)
    show.add_argument("host_name", metavar="HOST")
    delete = actions.add_parser(
        "delete", help="forget a host taken out of service (its record, instances, heartbeat)"
    )
    connection(delete, local=False)
    delete.add_argument("host_name", metavar="HOST")


def run(args: argparse.Namespace, api: Api) -> int:
    if args.hosts_command == "list":
        hosts = api.scheduler("GET", "/hosts")["hosts"]
        if args.down:
            hosts = [h for h in hosts if not h["up"]]
        if args.format == "json":
            render.emit_json(hosts)
            return 0
        rows = [
            (
                h["host"],
                h["nodename"],
                h["compute_node_uuid"],
                "[green]up[/]" if h["up"] else "[red]down[/]",
                "[yellow]disabled[/]"
                + (f" ({h['disabled_reason']})" if h["disabled_reason"] else "")
                if h["disabled"]
                else "enabled",
                f"{h['seconds_since_heartbeat']:g} s",
                h["instances"],
                len(h["aggregates"]),
            )
            for h in sorted(hosts, key=lambda h: (h["host"], h["nodename"]))
        ]
        columns = ["host", "node", "uuid", "state", "status", "last heartbeat", "instances"]
        render.console().print(render.table(f"{len(rows)} host(s)", [*columns, "aggregates"], rows))
        return 0
    if args.hosts_command == "show":
        found = api.scheduler("GET", f"/hosts/{args.host_name}")
        if args.format == "json":
            render.emit_json(found)
            return 0
        out = render.console()
        for node in found["nodes"]:
            report = node.pop("report")
            fields: list[tuple[str, Any]] = list(node.items())
            fields += [(f"report.{k}", v) for k, v in report.items() if v not in (None, [], {})]
            out.print(
                render.table(f"{found['host']} / {node['nodename']}", ["field", "value"], fields)
            )
        out.print(f"instances: {len(found['instance_uuids'])}")
        return 0
    if args.hosts_command == "delete":
        api.scheduler("DELETE", f"/hosts/{args.host_name}", ok=(204,))
        if args.format == "json":
            render.emit_json({"deleted": args.host_name})
        else:
            print(f"host {args.host_name} deleted from the scheduler")
        return 0
    raise CommandError(f"unknown hosts command {args.hosts_command}")
