"""Domain records returned by the store and the service (plain, immutable data)."""

from __future__ import annotations

from dataclasses import dataclass
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
