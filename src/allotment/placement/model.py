"""Domain records returned by the store and the service (plain, immutable data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Provider:
    id: int
    uuid: str
    name: str
    generation: int
    root_id: int
    parent_id: int | None
    root_uuid: str
    parent_uuid: str | None
    created_at: datetime
    updated_at: datetime | None

    @property
    def modified(self) -> datetime:
        return self.updated_at or self.created_at


CUSTOM_PREFIX = "CUSTOM_"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A resource class or a trait: a name and when it was created or last renamed."""

    id: int
    name: str
    created_at: datetime
    updated_at: datetime | None

    @property
    def modified(self) -> datetime:
        return self.updated_at or self.created_at

    @property
    def is_custom(self) -> bool:
        """Operator-defined (``CUSTOM_*``); every other name is standard and read-only."""
        return self.name.startswith(CUSTOM_PREFIX)


MAX_INT = 2147483647


@dataclass(frozen=True, slots=True)
class Inventory:
    """One resource class's inventory on one provider."""

    resource_class: str
    total: int
    reserved: int = 0
    min_unit: int = 1
    max_unit: int = MAX_INT
    step_size: int = 1
    allocation_ratio: float = 1.0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def capacity(self) -> int:
        """What may be allocated: ``(total - reserved) * allocation_ratio``, rounded down."""
        return int((self.total - self.reserved) * self.allocation_ratio)

    @property
    def modified(self) -> datetime | None:
        return self.updated_at or self.created_at


@dataclass(frozen=True, slots=True)
class RequestGroup:
    """One request group of an allocation-candidate (or provider) query.

    The unsuffixed group (``suffix == ""``) may be satisfied by several providers of one tree
    plus sharing providers; a suffixed (granular) group by exactly one provider.
    Trait and aggregate requirements are conjunctions of any-of sets: ``required_traits =
    (frozenset({"A", "B"}), frozenset({"C"}))`` means (A or B) and C.
    """

    suffix: str = ""
    resources: Mapping[str, int] = field(default_factory=dict)
    required_traits: tuple[frozenset[str], ...] = ()
    forbidden_traits: frozenset[str] = frozenset()
    member_of: tuple[frozenset[str], ...] = ()
    forbidden_aggregates: frozenset[str] = frozenset()
    in_tree: str | None = None

    @property
    def use_same_provider(self) -> bool:
        return bool(self.suffix)


@dataclass(frozen=True, slots=True)
class CandidateRequest:
    """Everything ``GET /allocation_candidates`` asks, independent of HTTP.

    ``nested_aware`` is False for microversions before 1.29: a candidate may then not take
    resources from two providers of the same tree.
    """

    groups: tuple[RequestGroup, ...]
    limit: int | None = None
    group_policy: str | None = None
    root_required: frozenset[str] = frozenset()
    root_forbidden: frozenset[str] = frozenset()
    same_subtrees: tuple[frozenset[str], ...] = ()
    nested_aware: bool = True


@dataclass(frozen=True, slots=True)
class AllocationRequest:
    """One allocation candidate: what to claim from which provider, and which provider
    satisfied each request group (``mappings``, keyed by suffix)."""

    allocations: Mapping[str, Mapping[str, int]]
    mappings: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class ProviderSummary:
    """A provider of a tree that takes part in some candidate: capacity and usage per class
    (``capacity = (total - reserved) * allocation_ratio``), traits and tree links."""

    uuid: str
    root_uuid: str
    parent_uuid: str | None
    resources: Mapping[str, tuple[int, int]]
    traits: tuple[str, ...]


# Upstream's project and user ids for consumers written before microversion 1.8, when
# allocations carried neither ("incomplete consumers").
INCOMPLETE_CONSUMER_ID = "00000000-0000-0000-0000-000000000000"
# How usages and GET /allocations name consumers whose type is not set (upstream's alias).
UNKNOWN_CONSUMER_TYPE = "unknown"


@dataclass(frozen=True, slots=True)
class ConsumerWrite:
    """What one consumer's allocations, owner and type should be after a write.

    ``allocations`` maps provider uuid -> resource class -> amount; empty means "remove all
    of this consumer's allocations". ``generation`` is the consumer generation the caller
    last saw (None: the consumer must not exist yet); it is compared only when
    ``check_generation`` (microversion 1.28 and later). ``consumer_type`` None leaves the
    type as it is (before 1.38).
    """

    allocations: Mapping[str, Mapping[str, int]]
    project_id: str
    user_id: str
    generation: int | None = None
    check_generation: bool = True
    consumer_type: str | None = None


@dataclass(frozen=True, slots=True)
class Consumer:
    uuid: str
    project_id: str
    user_id: str
    generation: int
    consumer_type: str | None


@dataclass(frozen=True, slots=True)
class Allocation:
    """One resource class's amount held by one consumer on one provider."""

    provider_uuid: str
    provider_generation: int
    consumer: Consumer
    resource_class: str
    used: int
    created_at: datetime
    updated_at: datetime | None

    @property
    def modified(self) -> datetime:
        return self.updated_at or self.created_at


@dataclass(frozen=True, slots=True)
class Usage:
    """Allocated amount of one class for one consumer type (None: every type together)."""

    consumer_type: str | None
    resource_class: str
    used: int
    consumer_count: int = 0
