"""The funnel: what each stage of a scheduling decision kept and removed.

Every stage — request filters, placement, host lookup, each host filter — records how many
hosts it received and how many it passed on (Nomad's per-stage counters). The funnel is
cheap enough to keep on every request; when nothing is left it becomes the NoValidHost
explanation: which stage emptied the list, the count at every step, and the hosts that
came closest (failed the fewest filters) with the reason each filter gave.
"""

from __future__ import annotations

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
    # Which instance of a multi-instance request the stage ran for (0 = the first).
    instance: int = 0
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
        if self.instance:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "nodename": self.nodename,
            "failed_filters": [{"filter": r.filter, "reason": r.reason} for r in self.rejections],
        }


@dataclass
class Funnel:
    """The stages of one request, in the order they ran."""

    stages: list[Stage] = field(default_factory=list)

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


@dataclass
class Explanation:
    """Why a request found no host; ``to_dict`` is the ``explanation`` of the 409 body."""

    summary: str
    funnel: Funnel
    # The instance (0-based) of the request that could not be placed.
    instance: int = 0
    closest_misses: list[Miss] = field(default_factory=list)

    @property
    def stage(self) -> Stage | None:
        return self.funnel.emptied_by()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": self.summary, "instance": self.instance}
        stage = self.stage
        if stage is not None:
            out["emptied_by"] = {"stage": stage.name, "kind": stage.kind}
        out["stages"] = [s.to_dict() for s in self.funnel.stages]
        if self.closest_misses:
            out["closest_misses"] = [m.to_dict() for m in self.closest_misses]
        return out
