"""Schemas for /resource_providers/{uuid}/inventories."""

from __future__ import annotations

import copy
from typing import Any

from allotment.placement.model import MAX_INT
from allotment.placement.schemas import Schema

# A resource class name: standard (upper case, digits, underscores) or CUSTOM_*.
RC_PATTERN = "^[A-Z0-9_]+$"
SQL_SP_FLOAT_MAX = 3.40282e38


def _int(minimum: int) -> dict[str, Any]:
    return {"type": "integer", "maximum": MAX_INT, "minimum": minimum}


_BASE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "resource_provider_generation": {"type": "integer"},
        "total": _int(1),
        "reserved": _int(0),
        "min_unit": _int(1),
        "max_unit": _int(1),
        "step_size": _int(1),
        "allocation_ratio": {"type": "number", "maximum": SQL_SP_FLOAT_MAX},
    },
    "required": ["total", "resource_provider_generation"],
    "additionalProperties": False,
}
_POST = copy.deepcopy(_BASE)
_POST["properties"]["resource_class"] = {"type": "string", "pattern": RC_PATTERN}
_POST["required"] = ["total", "resource_class"]
_RECORD = copy.deepcopy(_BASE)
_RECORD["required"] = ["total"]
_PUT_ALL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "resource_provider_generation": {"type": "integer"},
        "inventories": {
            "type": "object",
            "patternProperties": {RC_PATTERN: _RECORD},
            "additionalProperties": False,
        },
    },
    "required": ["resource_provider_generation", "inventories"],
    "additionalProperties": False,
}

PUT_ONE = Schema(_BASE)
POST = Schema(_POST)
PUT_ALL = Schema(_PUT_ALL)
