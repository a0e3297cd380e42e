"""Query schema for GET /usages."""

from __future__ import annotations

import copy
from typing import Any

from allotment.placement.schemas import Schema
from allotment.placement.schemas.allocation import CONSUMER_TYPE_PATTERN

_OWNER_ID = {"type": "string", "minLength": 1, "maxLength": 255}
_QUERY_1_9: dict[str, Any] = {
    "type": "object",
    "properties": {"project_id": _OWNER_ID, "user_id": _OWNER_ID},
    "required": ["project_id"],
    "additionalProperties": False,
}
_QUERY_1_38 = copy.deepcopy(_QUERY_1_9)
_QUERY_1_38["properties"]["consumer_type"] = {
    "type": "string",
    "pattern": f"{CONSUMER_TYPE_PATTERN}|^all|^unknown$",
    "minLength": 1,
    "maxLength": 255,
}

_PREFIX = "Invalid query string parameters"
QUERY_1_9 = Schema(_QUERY_1_9, prefix=_PREFIX)
QUERY_1_38 = Schema(_QUERY_1_38, prefix=_PREFIX)
