"""The funnel: what each stage of a scheduling decision kept and removed.

Every stage — request filters, placement, host lookup, each host filter — records how many
hosts it received and how many it passed on (Nomad's per-stage counters). The funnel is
cheap enough to keep on every request; when nothing is left it becomes the NoValidHost
explanation: which stage emptied the list, the count at every step, a one-line tally of
every host by the reason it was left out (kube-scheduler's "0/5 nodes are available: 3
Insufficient cpu, ..."), and the hosts that got furthest with the reason each filter gave.

Instances of a request are numbered from 1, in the summary and in the JSON alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

StageKind = Literal["request_filter", "placement", "hosts", "filter", "weigher"]

# How many near-miss hosts an explanation names.
CLOSEST_MISSES = 5


@dataclass(slots=True)
class Stage:
    """One step of the funnel. ``before``/``after`` are host counts (None: not host-counted,
    e.g. a request filter that only shaped the placement query)."""

    name: str
    kind: StageKind
    before: int | None = None
    after: int | None = None
    # Which instance of a multi-instance request the stage ran for (1 = the first).
    instance: int = 1
    # What the stage did or why: e.g. {"member_of": [...]} or per-resource-class counts.
    detail: dict[str, Any] = field(default_factory=dict)
    # For a host filter: how many hosts it rejected per reason code (Nomad's per-reason
    # failure counts), e.g. {"down": 120, "disabled": 180}.
    reasons: dict[str, int] | None = None

    @property
    def removed(self) -> int:
        if self.before is None or self.after is None:
            return 0
        return self.before - self.after

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stage": self.name, "kind": self.kind}
        if self.before is not None:
            out["before"] = self.before
            out["after"] = self.after
        if self.instance > 1:
            out["instance"] = self.instance
        if self.reasons is not None:
            out["reasons"] = self.reasons
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class Rejection:
    filter: str
    reason: str


@dataclass(frozen=True, slots=True)
class Miss:
    """A host that failed at least one filter, with every filter it failed and why."""

    host: str
    nodename: str
    rejections: tuple[Rejection, ...]
    # The stage that stopped it (the first filter it failed, or the drop that took it).
    stopped_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"host": self.host, "nodename": self.nodename}
        if self.stopped_by:
            out["stopped_by"] = self.stopped_by
        out["failed_filters"] = [{"filter": r.filter, "reason": r.reason} for r in self.rejections]
        return out


@dataclass(frozen=True, slots=True)
class Reason:
    """Hosts one stage left out for one reason: ``code`` for machines (the metrics'
    label: a filter's reason code, ``resources:VCPU``, ``taken:MEMORY_MB``), ``label``
    for people ("VCPU short")."""

    stage: str
    code: str
    label: str
    hosts: int

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "code": self.code, "label": self.label, "hosts": self.hosts}


@dataclass
class Funnel:
    """The stages of one request, in the order they ran."""

    stages: list[Stage] = field(default_factory=list)
    # Asks placement which constraint removed how many hosts, when it offered some
    # (asked only if the request then fails): (hosts considered, placement stage detail).
    placement_counts: Callable[[], tuple[int | None, dict[str, Any]]] | None = None

    def record(
        self,
        name: str,
        kind: StageKind,
        before: int | None = None,
        after: int | None = None,
        *,
        instance: int = 0,
        reasons: dict[str, int] | None = None,
        **detail: Any,
    ) -> Stage:
        stage = Stage(name, kind, before, after, instance, detail, reasons)
        self.stages.append(stage)
        return stage

    def emptied_by(self) -> Stage | None:
        """The first stage that left no host (None if every stage left some)."""
        for stage in self.stages:
            if stage.after == 0:
                return stage
        return None

    def count_placement(self) -> None:
        """Fill in placement's drop per constraint when it offered hosts (once)."""
        ask, self.placement_counts = self.placement_counts, None
        stage = next((s for s in self.stages if s.kind == "placement"), None)
        if ask is None or stage is None or "constraints" in stage.detail:
            return
        considered, detail = ask()
        if considered is not None:
            stage.before = considered
        detail.pop("eliminated_by", None)
        stage.detail.update(detail)

    def considered(self) -> int | None:
        """Hosts the request started from: the first stage that counted them."""
        return next((s.before for s in self.stages if s.before is not None), None)

    def reasons(self) -> list[Reason]:
        """Every host left out, by the stage and reason that left it out, most first."""
        zones = {
            tuple(s.detail.get("member_of", ())): s.detail["availability_zone"]
            for s in self.stages
            if s.kind == "request_filter" and "availability_zone" in s.detail
        }
        found: list[Reason] = []
        for stage in self.stages:
            found += _stage_reasons(stage, zones)
        merged: dict[tuple[str, str], Reason] = {}
        for reason in found:
            key = (reason.stage, reason.code)
            old = merged.get(key)
            hosts = reason.hosts + (old.hosts if old else 0)
            merged[key] = Reason(reason.stage, reason.code, reason.label, hosts)
        return sorted(
            (r for r in merged.values() if r.hosts > 0), key=lambda r: (-r.hosts, r.label)
        )

    def tally(self) -> str:
        """The one line: "0/10,000 hosts: 6,012 VCPU short, 3,100 not in az1, 120 down"."""
        total = self.considered()
        by_label: dict[str, int] = {}
        for reason in self.reasons():
            by_label[reason.label] = by_label.get(reason.label, 0) + reason.hosts
        parts = [f"{n:,} {label}" for label, n in sorted(by_label.items(), key=lambda i: -i[1])]
        head = f"0/{total:,} hosts" if total is not None else "0 hosts"
        return f"{head}: {', '.join(parts)}" if parts else head


def _stage_reasons(stage: Stage, zones: dict[tuple[str, ...], str]) -> list[Reason]:
    """The hosts ``stage`` left out, per reason."""
    name = stage.name
    if stage.kind == "request_filter":
        return []
    if stage.kind == "filter":
        return [
            Reason(name, code, code.replace("_", "-"), n)
            for code, n in (stage.reasons or {}).items()
        ]
    if stage.kind == "placement":
        return _placement_reasons(stage, zones)
    if stage.reasons:
        return [
            Reason(name, f"taken:{rc}", f"{rc} taken by earlier instances", n)
            if name == "placement_capacity"
            else Reason(name, rc, rc, n)
            for rc, n in stage.reasons.items()
        ]
    label = _HOST_STAGE_LABELS.get(name, name.replace("_", " "))
    if stage.kind == "weigher":
        label = f"weigher failed ({stage.detail.get('error', '')})"
    return [Reason(name, name, label, stage.removed)]


_HOST_STAGE_LABELS = {
    "host_records": "without a host record",
    "requested_destination": "not the requested destination",
    "ignore_hosts": "ignored by the request",
    "force_hosts": "not forced",
    "force_nodes": "not forced",
    "availability_zone": "not in the availability zone",
    "claim_conflict": "lost a claim race",
}


def _placement_reasons(stage: Stage, zones: dict[tuple[str, ...], str]) -> list[Reason]:
    constraints = stage.detail.get("constraints") or []
    if not constraints:
        if stage.before is None or stage.after is None:
            return []
        error = stage.detail.get("error")
        label = f"refused by placement ({error})" if error else "left out by placement"
        return [Reason("placement", "placement", label, stage.removed)]
    found = []
    for c in constraints:
        code, label = _constraint_label(c, zones)
        found.append(Reason("placement", code, label, int(c["before"]) - int(c["after"])))
    left = int(constraints[-1]["after"])
    if stage.after is not None and left > stage.after:
        if stage.after == 0:
            code, label = "not_together", "request groups not satisfiable together"
        else:
            code, label = "limit", "beyond the candidate limit"
        found.append(Reason("placement", code, label, left - stage.after))
    return found


def _constraint_label(c: dict[str, Any], zones: dict[tuple[str, ...], str]) -> tuple[str, str]:
    kind, value = c["constraint"], c["value"]
    if kind == "resources":
        rc = str(value).partition(":")[0]
        return f"resources:{rc}", f"{rc} short"
    if kind in ("required_trait", "root_required"):
        shown = " or ".join(value) if isinstance(value, list) else value
        return kind, f"lack {shown}"
    if kind in ("forbidden_trait", "root_forbidden"):
        if value == "COMPUTE_STATUS_DISABLED":
            return kind, "disabled"
        return kind, f"have {value}"
    if kind == "member_of":
        zone = zones.get(tuple(value)) if isinstance(value, list) else None
        return kind, f"not in {zone}" if zone else "not in the required aggregates"
    if kind == "forbidden_aggregates":
        return kind, "in a forbidden aggregate"
    if kind == "in_tree":
        return kind, "not the requested tree"
    return kind, f"{kind} {value}"


@dataclass
class Explanation:
    """Why a request found no host; ``to_dict`` is the ``explanation`` of the 409 body."""

    summary: str
    funnel: Funnel
    # The instance of the request that could not be placed (1 = the first).
    instance: int = 1
    closest_misses: list[Miss] = field(default_factory=list)
    # Whether to add the tally (a refusal; not for an "it fits" answer).
    refused: bool = True

    @property
    def stage(self) -> Stage | None:
        return self.funnel.emptied_by()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": self.summary, "instance": self.instance}
        stage = self.stage
        reasons = self.funnel.reasons() if self.refused else []
        if stage is not None:
            out["emptied_by"] = {"stage": stage.name, "kind": stage.kind}
        if self.refused:
            # The emptying stage's main reason: what the no-valid-host metric counts.
            main = next((r for r in reasons if stage and r.stage == stage.name), None)
            out["tally"] = {
                "line": self.funnel.tally(),
                "hosts": self.funnel.considered(),
                "blocker": main.code if main else (stage.name if stage else None),
                "reasons": [r.to_dict() for r in reasons],
            }
        out["stages"] = [s.to_dict() for s in self.funnel.stages]
        if self.closest_misses:
            out["closest_misses"] = [m.to_dict() for m in self.closest_misses]
        return out


def with_tally(head: str, funnel: Funnel) -> str:
    """A refusal's summary: its headline, then the one-line tally when hosts were counted."""
    if funnel.considered() is None:
        return head
    return f"{head.rstrip('.')}. {funnel.tally()}."
