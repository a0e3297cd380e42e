"""``allotment capacity``: how many more of each flavor fit now, per availability zone and
in total (the server's ``POST /scheduler/v1/capacity``: the real request filters,
placement query and host filters, claiming nothing)."""

from __future__ import annotations

import argparse
from typing import Any

from allotment.commands import render
from allotment.commands.api import Api, CommandError
from allotment.commands.explain import flavor_arg, key_values
from allotment.config import Settings


def register(sub: Any, connection: Any) -> None:
    parser = sub.add_parser("capacity", help="how many more of each flavor fit (the what-if)")
    connection(parser)
    parser.add_argument(
        "--flavor",
        action="append",
        type=flavor_arg,
        metavar="NAME:VCPUS:RAM_MB:DISK_GB",
        help="a flavor to count (repeat; default: [metrics] capacity_flavors)",
    )
    parser.add_argument("--az", help="only this availability zone")
    parser.add_argument("--image-property", action="append", metavar="KEY=VALUE")
    parser.add_argument("--project", help="the project asking (tenant-isolated aggregates)")
    parser.add_argument("--hosts", action="store_true", help="also list what fits per host")


def run(args: argparse.Namespace, api: Api, settings: Settings) -> int:
    flavors = args.flavor or [f.as_flavor() for f in settings.metrics.capacity_flavors]
    if not flavors:
        raise CommandError(
            "name a flavor (--flavor NAME:VCPUS:RAM_MB:DISK_GB) or set [metrics] capacity_flavors"
        )
    body: dict[str, Any] = {"flavors": flavors, "hosts": bool(args.hosts)}
    if args.az:
        body["availability_zone"] = args.az
    if args.project:
        body["project_id"] = args.project
    properties = key_values(args.image_property, "--image-property")
    if properties:
        body["image"] = {"properties": properties}
    found = api.scheduler("POST", "/capacity", body)["flavors"]
    if args.format == "json":
        render.emit_json(found)
        return 0
    zones = sorted({z for f in found for z in f["availability_zones"]})
    rows = [
        (
            f["flavor"],
            *(f["availability_zones"].get(z, 0) for z in zones),
            f["total"],
            f.get("reason") or "",
        )
        for f in found
    ]
    out = render.console()
    out.print(render.table("instances that still fit", ["flavor", *zones, "total", "note"], rows))
    if args.hosts:
        for f in found:
            if not f["hosts"]:
                continue
            out.print(
                render.table(
                    f"{f['flavor']}: per host",
                    ["host", "node", "zone", "fits"],
                    [
                        (h["host"], h["nodename"], h["availability_zone"], h["fits"])
                        for h in f["hosts"]
                    ],
                )
            )
    return 0
