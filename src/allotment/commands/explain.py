"""``allotment explain``: the funnel and the ranking for a flavor, claiming nothing (the
server's ``POST /scheduler/v1/explain``, rendered). The explanation is shown from its
data: stages, their counts and whatever detail each stage carries."""

from __future__ import annotations

import argparse
import uuid as uuidlib
from typing import Any

from rich.console import Group
from rich.panel import Panel

from allotment.commands import render
from allotment.commands.api import Api, CommandError
from allotment.config import parse_flavor

_STAGE_COLUMNS = ("stage", "kind", "before", "after")
GROUP_POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")


def key_values(items: list[str] | None, what: str) -> dict[str, str]:
    found = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"{what} {item!r} is not key=value")
        found[key] = value
    return found


def flavor_arg(text: str) -> dict[str, Any]:
    try:
        return parse_flavor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: Any, connection: Any) -> None:
    parser = sub.add_parser(
        "explain", help="why a flavor fits where it does, or nowhere (claims nothing)"
    )
    connection(parser, local=False)
    parser.add_argument(
        "--flavor", required=True, type=flavor_arg, metavar="NAME:VCPUS:RAM_MB:DISK_GB"
    )
    parser.add_argument(
        "--extra-spec", action="append", metavar="KEY=VALUE", help="flavor extra spec"
    )
    parser.add_argument("--az", help="availability zone to boot into")
    parser.add_argument("--image-property", action="append", metavar="KEY=VALUE")
    parser.add_argument("--group-policy", choices=GROUP_POLICIES, help="a server group's policy")
    parser.add_argument(
        "--group-host", action="append", metavar="HOST", help="hosts of the group's members"
    )
    parser.add_argument("--project", default="explain", help="project asking (default: explain)")
    parser.add_argument("--count", type=int, default=1, help="instances to place (default 1)")
    parser.add_argument("--hosts", type=int, default=10, help="ranked hosts to show (default 10)")


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    flavor = dict(args.flavor)
    flavor["extra_specs"] = key_values(args.extra_spec, "--extra-spec")
    spec: dict[str, Any] = {"project_id": args.project, "user_id": "explain", "flavor": flavor}
    if args.az:
        spec["availability_zone"] = args.az
    properties = key_values(args.image_property, "--image-property")
    if properties:
        spec["image"] = {"properties": properties}
    if args.group_policy:
        spec["instance_group"] = {"policy": args.group_policy, "hosts": args.group_host or []}
    if not 1 <= args.count <= 1000:
        raise CommandError("--count must be 1 to 1000")
    return {
        "instance_uuids": [str(uuidlib.uuid4()) for _ in range(args.count)],
        "request_spec": spec,
        "hosts": args.hosts,
    }


def run(args: argparse.Namespace, api: Api) -> int:
    answer = api.scheduler("POST", "/explain", request_body(args))
    if args.format == "json":
        render.emit_json(answer)
    else:
        show(answer)
    return 0 if answer.get("result") == "ok" else 3


def show(answer: dict[str, Any]) -> None:
    out = render.console()
    explanation = answer.get("explanation", {})
    ok = answer.get("result") == "ok"
    out.print(
        Panel(
            explanation.get("summary", answer.get("result", "")),
            title="[green]fits[/]" if ok else "[red]no valid host[/]",
            title_align="left",
        )
    )
    stages = explanation.get("stages", [])
    rows = []
    nested: list[Any] = []
    for stage in stages:
        extra = {k: v for k, v in stage.items() if k not in _STAGE_COLUMNS}
        extra.update(extra.pop("detail", None) or {})
        for key, value in list(extra.items()):
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                # A list of records (placement's per-constraint counts, say): its own table.
                columns = list(dict.fromkeys(k for v in value for k in v))
                title = f"{stage.get('stage')}: {key}"
                nested.append(
                    render.table(title, columns, [[v.get(c) for c in columns] for v in value])
                )
                del extra[key]
            elif value in (None, {}, []):
                del extra[key]
        rows.append(
            (stage.get("stage"), stage.get("kind"), stage.get("before"), stage.get("after"), extra)
        )
    parts: list[Any] = [
        render.table("funnel", ["stage", "kind", "before", "after", "detail"], rows),
        *nested,
    ]
    misses = explanation.get("closest_misses") or []
    if misses:
        parts.append(
            render.table(
                "closest misses",
                ["host", "node", "failed"],
                [
                    (
                        m.get("host"),
                        m.get("nodename"),
                        "; ".join(
                            f"{f['filter']}: {f['reason']}" for f in m.get("failed_filters", [])
                        ),
                    )
                    for m in misses
                ],
            )
        )
    ranked = answer.get("hosts") or []
    if ranked:
        weighers = sorted({name for h in ranked for name in h.get("weighers", {})})
        parts.append(
            render.table(
                "ranking (first instance)",
                ["rank", "host", "node", "weight", *weighers],
                [
                    (
                        h.get("rank"),
                        h.get("host"),
                        h.get("nodename"),
                        h.get("weight"),
                        *(h.get("weighers", {}).get(w) for w in weighers),
                    )
                    for h in ranked
                ],
            )
        )
    placed = answer.get("instances") or []
    if placed:
        parts.append(
            render.table(
                "placement",
                ["instance", "host", "node"],
                [(p.get("instance_uuid"), p.get("host"), p.get("nodename")) for p in placed],
            )
        )
    out.print(Group(*parts))
