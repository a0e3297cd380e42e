"""The scenario file: a virtual cloud, a workload and one or more scheduling policies.

TOML, validated with pydantic; every error names the key that is wrong and why (see
docs/simulator.md for the format).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from allotment.config import FilterSchedulerConfig, SchedulerConfig
from allotment.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gpus(_Model):
    """Per-device child providers (one per GPU) under the host's root provider."""

    count: int = Field(ge=1, le=64)
    resource_class: str = "VGPU"
    units: int = Field(1, ge=1, description="inventory of each device provider")
    traits: list[str] = Field(default_factory=list)


class HostShape(_Model):
    """``count`` identical compute nodes."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    count: int = Field(ge=1, le=1_000_000)
    vcpus: int = Field(ge=1)
    memory_mb: int = Field(ge=1)
    disk_gb: int = Field(0, ge=0)
    # Nova's defaults: initial_cpu_allocation_ratio 4.0, ram and disk 1.0,
    # reserved_host_memory_mb 512.
    cpu_allocation_ratio: float | None = Field(None, gt=0)
    ram_allocation_ratio: float | None = Field(None, gt=0)
    disk_allocation_ratio: float | None = Field(None, gt=0)
    reserved_host_memory_mb: int = Field(512, ge=0)
    reserved_host_cpus: int = Field(0, ge=0)
    # NUMA nodes as child providers holding the VCPU and MEMORY_MB (split evenly).
    numa_nodes: int = Field(0, ge=0, le=16)
    gpus: Gpus | None = None
    traits: list[str] = Field(default_factory=list)
    # Hosts are dealt round-robin into these availability zones (none: the default AZ).
    azs: list[str] = Field(default_factory=list)
    # Names of [[aggregate]] blocks every host of the shape belongs to.
    aggregates: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _numa_split(self) -> HostShape:
        if self.numa_nodes and (self.vcpus % self.numa_nodes or self.memory_mb % self.numa_nodes):
            raise ValueError(
                f"vcpus ({self.vcpus}) and memory_mb ({self.memory_mb}) must divide evenly "
                f"into numa_nodes ({self.numa_nodes})"
            )
        return self


class AggregateSpec(_Model):
    name: str = Field(min_length=1)
    metadata: dict[str, str] = Field(default_factory=dict)


class FlavorSpec(_Model):
    name: str = Field(min_length=1)
    vcpus: int = Field(ge=1)
    memory_mb: int = Field(ge=1)
    root_gb: int = Field(0, ge=0)
    extra_specs: dict[str, str] = Field(default_factory=dict)
    # Share of arrivals (relative to the other flavors' weights).
    weight: float = Field(1.0, ge=0)

    @field_validator("extra_specs", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()
            }
        return value


class Lifetime(_Model):
    """How long instances live, in simulated hours."""

    distribution: Literal["exponential", "lognormal", "uniform", "fixed", "forever"] = "exponential"
    mean_h: float = Field(24.0, gt=0)
    # lognormal: sigma of the underlying normal; uniform: [min_h, max_h].
    sigma: float = Field(1.0, gt=0)
    min_h: float = Field(0.0, ge=0)
    max_h: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> Lifetime:
        if self.distribution == "uniform" and (self.max_h is None or self.max_h <= self.min_h):
            raise ValueError("a uniform lifetime needs max_h greater than min_h")
        return self


GroupPolicyName = Literal["anti-affinity", "affinity", "soft-anti-affinity", "soft-affinity"]


def _anti_affinity() -> dict[GroupPolicyName, float]:
    return {"anti-affinity": 1.0}


class Groups(_Model):
    """Server groups: a share of requests boots ``size`` instances in one group, as one
    multi-instance ``select_destinations`` call (``openstack server create --min N``)."""

    fraction: float = Field(0.0, ge=0, le=1)
    size_min: int = Field(2, ge=1)
    size_max: int = Field(4, ge=1)
    policies: dict[GroupPolicyName, float] = Field(default_factory=_anti_affinity)

    @model_validator(mode="after")
    def _sizes(self) -> Groups:
        if self.size_max < self.size_min:
            raise ValueError(f"size_max ({self.size_max}) is below size_min ({self.size_min})")
        if self.fraction and not any(w > 0 for w in self.policies.values()):
            raise ValueError("policies needs at least one positive weight")
        return self


class Workload(_Model):
    seed: int = 0
    # Simulated time span and number of requests (Poisson arrivals at requests / duration),
    # unless a CSV trace gives them.
    duration_h: float = Field(168.0, gt=0)
    requests: int = Field(1000, ge=0)
    trace: Path | None = None
    lifetime: Lifetime = Field(default_factory=Lifetime)
    # Share of requests with an availability zone hint, by zone (the rest: no zone).
    az_hints: dict[str, float] = Field(default_factory=dict)
    groups: Groups = Field(default_factory=Groups)
    # Share of instances resized once (to the next larger flavor of the mix) or cold
    # migrated once, half-way through their life; both go through select_destinations.
    resize_fraction: float = Field(0.0, ge=0, le=1)
    migrate_fraction: float = Field(0.0, ge=0, le=1)
    # Share of each host's VCPU/RAM already taken by instances at the start (drawn from
    # the flavor mix, onto a random fill level up to this).
    existing_load: float = Field(0.0, ge=0, le=0.95)

    @field_validator("az_hints")
    @classmethod
    def _hints(cls, value: dict[str, float]) -> dict[str, float]:
        total = sum(value.values())
        if any(v < 0 for v in value.values()) or total > 1 + 1e-9:
            raise ValueError(f"shares must be >= 0 and sum to at most 1 (they sum to {total})")
        return value


class Policy(_Model):
    """A scheduling policy to try: Nova's ``[filter_scheduler]`` and ``[scheduler]``
    options, and allocation ratios that override the host shapes'."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    filter_scheduler: dict[str, Any] = Field(default_factory=dict)
    scheduler: dict[str, Any] = Field(default_factory=dict)
    cpu_allocation_ratio: float | None = Field(None, gt=0)
    ram_allocation_ratio: float | None = Field(None, gt=0)
    disk_allocation_ratio: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _options(self) -> Policy:
        for section, model in (
            ("filter_scheduler", FilterSchedulerConfig),
            ("scheduler", SchedulerConfig),
        ):
            try:
                model.model_validate(getattr(self, section))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                what = "unknown option" if first["type"] == "extra_forbidden" else first["msg"]
                raise ValueError(f"{section}.{where}: {what}") from None
        return self


class Scenario(_Model):
    name: str = "scenario"
    description: str = ""
    hosts: list[HostShape] = Field(min_length=1)
    aggregate: list[AggregateSpec] = Field(default_factory=list)
    flavor: list[FlavorSpec] = Field(min_length=1)
    workload: Workload = Field(default_factory=Workload)
    policy: list[Policy] = Field(default_factory=lambda: [Policy(name="default")])
    # Metric checkpoints over the simulated time span.
    checkpoints: int = Field(100, ge=2, le=10000)
    # Simulated seconds of events replayed as one batch (see docs/simulator.md); 0: only
    # arrivals that no other event separates.
    batch_window_s: float = Field(60.0, ge=0.0, le=86400.0)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        names = [a.name for a in self.aggregate]
        for shape in self.hosts:
            for agg in shape.aggregates:
                if agg not in names:
                    raise ValueError(
                        f"host shape {shape.name!r} names aggregate {agg!r}, which no "
                        f"[[aggregate]] defines (defined: {', '.join(names) or 'none'})"
                    )
        for kind, seen in (
            ("host shape", [h.name for h in self.hosts]),
            ("flavor", [f.name for f in self.flavor]),
            ("policy", [p.name for p in self.policy]),
            ("aggregate", names),
        ):
            dup = {n for n in seen if seen.count(n) > 1}
            if dup:
                raise ValueError(f"{kind} names must be unique: {', '.join(sorted(dup))}")
        if not any(f.weight > 0 for f in self.flavor):
            raise ValueError("at least one flavor needs a positive weight")
        zones = {z for h in self.hosts for z in h.azs}
        unknown = set(self.workload.az_hints) - zones
        if unknown:
            raise ValueError(
                f"workload.az_hints names zones no host is in: {', '.join(sorted(unknown))}"
            )
        return self

    @property
    def host_count(self) -> int:
        return sum(h.count for h in self.hosts)

    def checkpoint_times(self, duration_h: float) -> list[float]:
        step = duration_h / (self.checkpoints - 1)
        return [round(i * step, 9) for i in range(self.checkpoints)]

    def with_policies(self, policies: list[Policy]) -> Scenario:
        return self.model_copy(update={"policy": policies})


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid scenario {source}:"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key")
        elif item["type"] == "missing":
            lines.append(f"  {where}: required")
        else:
            message = item["msg"].removeprefix("Value error, ")
            got = item.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            lines.append(f"  {where}: {message}{shown}")
    return "\n".join(lines)


def parse_scenario(data: Any, source: str = "(inline)", base: Path | None = None) -> Scenario:
    """A validated scenario; ConfigError names each wrong key. A relative trace path is
    read relative to ``base`` (the scenario file's folder)."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    trace = scenario.workload.trace
    if trace is not None and not trace.is_absolute() and base is not None:
        workload = scenario.workload.model_copy(update={"trace": base / trace})
        scenario = scenario.model_copy(update={"workload": workload})
    if scenario.workload.trace is not None and not scenario.workload.trace.is_file():
        raise ConfigError(
            f"invalid scenario {source}:\n  workload.trace: {scenario.workload.trace} "
            "does not exist"
        )
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"scenario file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"scenario file {path} is not valid TOML: {exc}") from None
    return parse_scenario(data, str(path), path.parent)
