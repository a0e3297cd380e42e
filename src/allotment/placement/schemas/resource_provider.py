"""Schemas for /resource_providers."""

from __future__ import annotations

import copy
from typing import Any

from allotment.placement import microversions as mv
from allotment.placement.schemas import Schema

_NAME = {"type": "string", "maxLength": 200}
_UUID = {"type": "string", "format": "uuid"}
_NULLABLE_UUID = {"anyOf": [_UUID, {"type": "null"}]}

_POST: dict[str, Any] = {
    "type": "object",
    "properties": {"name": _NAME, "uuid": _UUID},
    "required": ["name"],
    "additionalProperties": False,
}
_POST_1_14 = copy.deepcopy(_POST)
_POST_1_14["properties"]["parent_provider_uuid"] = _NULLABLE_UUID
_PUT = copy.deepcopy(_POST)
del _PUT["properties"]["uuid"]
_PUT_1_14 = copy.deepcopy(_POST_1_14)
del _PUT_1_14["properties"]["uuid"]

POST = Schema(_POST)
POST_1_14 = Schema(_POST_1_14)
PUT = Schema(_PUT)
PUT_1_14 = Schema(_PUT_1_14)

_LIST_PROPERTIES: list[tuple[int, str, dict[str, Any]]] = [
    (mv.MIN_VERSION[1], "name", {"type": "string"}),
    (mv.MIN_VERSION[1], "uuid", _UUID),
    (mv.MEMBER_OF, "member_of", {"type": "string"}),
    (mv.RESOURCES_FILTER, "resources", {"type": "string"}),
    (mv.NESTED_PROVIDERS, "in_tree", _UUID),
    (mv.PROVIDER_TRAITS_FILTER, "required", {"type": "string"}),
]


def list_query(minor: int) -> Schema:
    """The query-string schema of GET /resource_providers at microversion 1.``minor``."""
    return _LIST_QUERY[max(m for m in _LIST_VERSIONS if m <= minor)]


_LIST_VERSIONS = sorted({m for m, _, _ in _LIST_PROPERTIES})
_LIST_QUERY = {
    version: Schema(
        {
            "type": "object",
            "properties": {k: v for m, k, v in _LIST_PROPERTIES if m <= version},
            "additionalProperties": False,
        },
        prefix="Invalid query string parameters",
    )
    for version in _LIST_VERSIONS
}
