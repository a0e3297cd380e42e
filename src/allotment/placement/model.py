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
