"""The scheduling request: what ``select_destinations`` receives, validated once.

The shapes follow Nova's ``RequestSpec`` (flavor, image, server group, hints, forced and
ignored hosts, requested destination) as a JSON body, so a caller coming from Nova maps
its objects field by field. The models are immutable: what changes while a multi-instance
request is placed (hosts chosen so far, the instance being placed) lives in the
scheduling cycle, never in the spec.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from allotment.scheduler.records import parse

GroupPolicy = Literal["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Flavor(_Model):
    name: str
    vcpus: int = Field(ge=0)
    memory_mb: int = Field(ge=0)
    root_gb: int = Field(0, ge=0)
    ephemeral_gb: int = Field(0, ge=0)
    swap: int = Field(0, ge=0)
    extra_specs: dict[str, str] = Field(default_factory=dict)

    @field_validator("extra_specs", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # Nova stores extra specs as strings; callers often send numbers and booleans.
        if isinstance(value, dict):
            return {
                k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()
            }
        return value


class Image(_Model):
    id: str | None = None
    name: str | None = None
    disk_format: str | None = None
    container_format: str | None = None
    min_ram: int = 0
    min_disk: int = 0
    properties: dict[str, Any] = Field(default_factory=dict)


class InstanceGroup(_Model):
    uuid: str | None = None
    policy: GroupPolicy
    rules: dict[str, int] = Field(default_factory=dict)
    members: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)

    @property
    def max_server_per_host(self) -> int:
        return int(self.rules.get("max_server_per_host", 1))


class Destination(_Model):
    host: str | None = None
    node: str | None = None
    # Nova's Destination.aggregates: each item is a comma-separated any-of list; items AND.
    aggregates: list[str] = Field(default_factory=list)


class RequestSpec(_Model):
    project_id: str
    user_id: str | None = None
    flavor: Flavor
    image: Image | None = None
    availability_zone: str | None = None
    instance_group: InstanceGroup | None = None
    scheduler_hints: dict[str, Any] = Field(default_factory=dict)
    force_hosts: list[str] = Field(default_factory=list)
    force_nodes: list[str] = Field(default_factory=list)
    ignore_hosts: list[str] = Field(default_factory=list)
    requested_destination: Destination | None = None
    # Boot from volume: the root disk is not local, so DISK_GB excludes root_gb.
    is_bfv: bool = False

    @property
    def image_properties(self) -> dict[str, Any]:
        return self.image.properties if self.image is not None else {}

    @property
    def extra_specs(self) -> dict[str, str]:
        return self.flavor.extra_specs

    def hint(self, name: str, default: Any = None) -> Any:
        """A scheduler hint the way Nova reads it: a one-item list is its only item."""
        value = self.scheduler_hints.get(name, default)
        if isinstance(value, list) and len(value) == 1:
            return value[0]
        return value

    def hint_list(self, name: str) -> list[str]:
        """A hint that names instances or hosts, always as a list of strings."""
        value = self.scheduler_hints.get(name)
        if value is None or value == "":
            return []
        if isinstance(value, list):
            return [str(v) for v in value]
        return [str(value)]


def parse_request_spec(data: Any) -> RequestSpec:
    """Validate a JSON request spec; errors name the field and what was wrong (400)."""
    return parse(RequestSpec, data, "request_spec")
