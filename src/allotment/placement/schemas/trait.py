"""Schemas for /traits and /resource_providers/{uuid}/traits."""

from __future__ import annotations

import re
from typing import Any

from allotment.placement.schemas import Schema

_CUSTOM_NAME = re.compile(r"CUSTOM_[A-Z0-9_]+")
MAX_NAME_LENGTH = 255


def is_custom_name(name: str) -> bool:
    """Whether ``name`` may be created as a trait: ``CUSTOM_`` then A-Z, 0-9 and _."""
    return len(name) <= MAX_NAME_LENGTH and _CUSTOM_NAME.fullmatch(name) is not None


_TRAIT: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}

SET_FOR_PROVIDER = Schema(
    {
        "type": "object",
        "properties": {
            "traits": {"type": "array", "items": _TRAIT},
            "resource_provider_generation": {"type": "integer"},
        },
        "required": ["traits", "resource_provider_generation"],
        "additionalProperties": False,
    }
)

LIST_QUERY = Schema(
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "associated": {"type": "string"}},
        "additionalProperties": False,
    },
    prefix="Invalid query string parameters",
)
