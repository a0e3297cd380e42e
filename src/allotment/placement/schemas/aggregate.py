"""Schemas for /resource_providers/{uuid}/aggregates."""

from __future__ import annotations

from typing import Any

from allotment.placement.schemas import Schema

_LIST: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "format": "uuid"},
    "uniqueItems": True,
}

# Up to 1.18 the body is the bare list; from 1.19 it carries the provider generation.
PUT = Schema(_LIST)
PUT_1_19 = Schema(
    {
        "type": "object",
        "properties": {"aggregates": _LIST, "resource_provider_generation": {"type": "integer"}},
        "required": ["aggregates", "resource_provider_generation"],
        "additionalProperties": False,
    }
)
