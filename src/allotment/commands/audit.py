"""``allotment audit``: what the ledger holds that nothing explains (``nova-manage
placement audit``'s job, for allotment's own records):

- allocations whose consumer no host lists among its instances (``PUT
  /scheduler/v1/hosts/{host}/instances``): left behind by an instance deleted while its
  host was away, or a claim whose boot never happened. Only instance consumers count
  (migrations are someone's move in flight); when no host reports instances at all the
  check is skipped, since every allocation would look orphaned. A claim made a moment ago
  whose instance has not been reported yet looks the same: run it twice, or when quiet;
- root providers no host reports (and that are not sharing providers): a host gone
  without ``allotment agent deregister``, or not reporting yet;
- usage above capacity, ``used > (total - reserved) * allocation_ratio``: an allocation
  ratio or reserved amount lowered under existing allocations.

``--fix`` (after a confirmation, or ``--yes``) deletes the orphaned allocations and the
unreported providers that hold no allocations; usage above capacity needs a person.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import Progress

from allotment.commands import render
from allotment.commands.api import Api

SHARING = "MISC_SHARES_VIA_AGGREGATE"


def register(sub: Any, connection: Any) -> None:
    parser = sub.add_parser("audit", help="orphaned allocations, unreported providers, overuse")
    connection(parser)
    parser.add_argument("--fix", action="store_true", help="delete what is orphaned (asks first)")
    parser.add_argument("--yes", action="store_true", help="with --fix: do not ask")


@dataclass
class Findings:
    orphaned_allocations: list[dict[str, Any]] = field(default_factory=list)
    providers_without_host: list[dict[str, Any]] = field(default_factory=list)
    over_capacity: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "orphaned_allocations": self.orphaned_allocations,
            "providers_without_host": self.providers_without_host,
            "over_capacity": self.over_capacity,
            "notes": self.notes,
        }

    @property
    def fixable(self) -> int:
        return len(self.orphaned_allocations) + sum(
            1 for p in self.providers_without_host if not p["consumers"]
        )


def audit(api: Api, *, progress: bool) -> Findings:
    found = Findings()
    hosts = api.scheduler("GET", "/hosts")["hosts"]
    reported = {h["compute_node_uuid"]: h["host"] for h in hosts}
    providers = api.call("GET", "/resource_providers")["resource_providers"]
    sharing = {
        p["uuid"]
        for p in api.call("GET", f"/resource_providers?required={SHARING}")["resource_providers"]
    }
    instances: set[str] = set()
    consumers: dict[str, dict[str, dict[str, int]]] = {}  # consumer -> provider -> resources
    with Progress(console=Console(file=sys.stderr), transient=True, disable=not progress) as bar:
        task = bar.add_task("hosts", total=len({h["host"] for h in hosts}))
        for name in sorted({h["host"] for h in hosts}):
            instances.update(api.scheduler("GET", f"/hosts/{name}")["instance_uuids"])
            bar.advance(task)
        task = bar.add_task("providers", total=len(providers))
        for provider in providers:
            uuid = provider["uuid"]
            held = api.call("GET", f"/resource_providers/{uuid}/allocations")["allocations"]
            for consumer, body in held.items():
                consumers.setdefault(consumer, {})[uuid] = body["resources"]
            provider["consumers"] = sorted(held)
            inventories = api.call("GET", f"/resource_providers/{uuid}/inventories")["inventories"]
            usages = api.call("GET", f"/resource_providers/{uuid}/usages")["usages"]
            for rc, inv in sorted(inventories.items()):
                capacity = int((inv["total"] - inv["reserved"]) * inv["allocation_ratio"])
                used = usages.get(rc, 0)
                if used > capacity:
                    found.over_capacity.append(
                        {
                            "provider": provider["name"],
                            "uuid": uuid,
                            "resource_class": rc,
                            "used": used,
                            "capacity": capacity,
                            "total": inv["total"],
                            "reserved": inv["reserved"],
                            "allocation_ratio": inv["allocation_ratio"],
                        }
                    )
            bar.advance(task)
    for provider in providers:
        if (
            provider["parent_provider_uuid"] is None
            and provider["uuid"] not in reported
            and provider["uuid"] not in sharing
        ):
            found.providers_without_host.append(
                {
                    "name": provider["name"],
                    "uuid": provider["uuid"],
                    "consumers": provider["consumers"],
                }
            )
    if not instances and consumers:
        found.notes.append(
            "no host reports its instances (PUT /scheduler/v1/hosts/{host}/instances), so "
            "orphaned allocations cannot be told apart; that check was skipped"
        )
        return found
    names = {p["uuid"]: p["name"] for p in providers}
    for consumer in sorted(set(consumers) - instances):
        detail = api.call("GET", f"/allocations/{consumer}")
        kind = detail.get("consumer_type", "INSTANCE")
        if kind != "INSTANCE":
            continue
        found.orphaned_allocations.append(
            {
                "consumer": consumer,
                "project_id": detail.get("project_id"),
                "providers": {names.get(rp, rp): res for rp, res in consumers[consumer].items()},
            }
        )
    return found


def fix(api: Api, found: Findings) -> tuple[int, list[str]]:
    done, failed = 0, []
    for item in found.orphaned_allocations:
        try:
            api.call("DELETE", f"/allocations/{item['consumer']}", ok=(204, 404))
            done += 1
        except Exception as exc:  # reported, the rest still fixed
            failed.append(str(exc))
    for item in found.providers_without_host:
        if item["consumers"]:
            continue
        try:
            api.call("DELETE", f"/resource_providers/{item['uuid']}", ok=(204, 404))
            done += 1
        except Exception as exc:
            failed.append(str(exc))
    return done, failed


def run(args: argparse.Namespace, api: Api) -> int:
    as_json = args.format == "json"
    found = audit(api, progress=not as_json and sys.stderr.isatty())
    fixed: dict[str, Any] | None = None
    if not as_json:
        show(found)
    if args.fix and found.fixable:
        if not args.yes:
            if as_json or not sys.stdin.isatty():
                print(
                    "allotment: --fix needs --yes when there is no terminal to ask", file=sys.stderr
                )
                return 1
            answer = input(f"delete {found.fixable} orphaned allocation(s)/provider(s)? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing changed")
                return 1
        done, failed = fix(api, found)
        fixed = {"fixed": done, "failed": failed}
        if not as_json:
            print(
                f"fixed {done}"
                + (f"; {len(failed)} failed: " + "; ".join(failed) if failed else "")
            )
    if as_json:
        render.emit_json({**found.to_dict(), **({"fix": fixed} if fixed is not None else {})})
    problems = (
        len(found.orphaned_allocations)
        + len(found.providers_without_host)
        + len(found.over_capacity)
    )
    if fixed is not None and not fixed["failed"]:
        problems -= fixed["fixed"]
    return 0 if problems == 0 else 3


def show(found: Findings) -> None:
    out = render.console()
    out.print(
        render.table(
            f"orphaned allocations: {len(found.orphaned_allocations)}",
            ["consumer", "project", "providers"],
            [(a["consumer"], a["project_id"], a["providers"]) for a in found.orphaned_allocations],
        )
    )
    out.print(
        render.table(
            f"providers no host reports: {len(found.providers_without_host)}",
            ["provider", "uuid", "allocations"],
            [(p["name"], p["uuid"], len(p["consumers"])) for p in found.providers_without_host],
        )
    )
    out.print(
        render.table(
            f"usage above capacity: {len(found.over_capacity)}",
            ["provider", "class", "used", "capacity", "total", "reserved", "ratio"],
            [
                (
                    o["provider"],
                    o["resource_class"],
                    o["used"],
                    o["capacity"],
                    o["total"],
                    o["reserved"],
                    o["allocation_ratio"],
                )
                for o in found.over_capacity
            ],
        )
    )
    for note in found.notes:
        out.print(f"[yellow]note:[/] {note}")
