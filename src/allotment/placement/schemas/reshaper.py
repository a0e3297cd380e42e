"""Schemas for POST /reshaper (1.30; the allocations part follows 1.34 and 1.38)."""

from __future__ import annotations

import copy
from typing import Any

from allotment.placement import microversions as mv
from allotment.placement.schemas import Schema
from allotment.placement.schemas import allocation as alloc
from allotment.placement.schemas.inventory import PUT_ALL

_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "inventories": {
            "type": "object",
            "patternProperties": {alloc.UUID_PATTERN: PUT_ALL.schema},
            # Nothing to reshape without at least one provider's inventories.
            "minProperties": 1,
            "additionalProperties": False,
        },
        "allocations": alloc.MANY_1_28,
    },
    "required": ["inventories", "allocations"],
    "additionalProperties": False,
}
_BODY_1_34 = copy.deepcopy(_BODY)
_BODY_1_34["properties"]["allocations"] = alloc.MANY_1_34
_BODY_1_38 = copy.deepcopy(_BODY)
_BODY_1_38["properties"]["allocations"] = alloc.MANY_1_38

POST_1_30 = Schema(_BODY)
POST_1_34 = Schema(_BODY_1_34)
POST_1_38 = Schema(_BODY_1_38)


def post_schema(minor: int) -> Schema:
    """The POST /reshaper body schema at microversion 1.``minor`` (1.30 and later)."""
    if minor >= mv.CONSUMER_TYPES:
        return POST_1_38
    return POST_1_34 if minor >= mv.MAPPINGS else POST_1_30
