"""Schemas for /allocations (PUT per consumer, POST for many consumers) per microversion."""

from __future__ import annotations

import copy
from typing import Any

from allotment.placement import microversions as mv
from allotment.placement.model import MAX_INT
from allotment.placement.schemas import Schema

UUID_PATTERN = "^[0-9a-fA-F-]{36}$"
RC_PATTERN = "^[A-Z0-9_]+$"
CONSUMER_TYPE_PATTERN = RC_PATTERN
GROUP_PATTERN = "[a-zA-Z0-9_-]{1,64}"  # request group suffixes, as of 1.33

_OWNER_ID = {"type": "string", "minLength": 1, "maxLength": 255}
_RESOURCES = {
    "type": "object",
    "minProperties": 1,
    "patternProperties": {RC_PATTERN: {"type": "integer", "minimum": 1, "maximum": MAX_INT}},
    "additionalProperties": False,
}

# 1.0: a list of {resource_provider: {uuid}, resources}.
_PUT_1_0: dict[str, Any] = {
    "type": "object",
    "properties": {
        "allocations": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "resource_provider": {
                        "type": "object",
                        "properties": {"uuid": {"type": "string", "format": "uuid"}},
                        "additionalProperties": False,
                        "required": ["uuid"],
                    },
                    "resources": _RESOURCES,
                },
                "required": ["resource_provider", "resources"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["allocations"],
    "additionalProperties": False,
}

# 1.8: project_id and user_id are required.
_PUT_1_8 = copy.deepcopy(_PUT_1_0)
_PUT_1_8["properties"]["project_id"] = _OWNER_ID
_PUT_1_8["properties"]["user_id"] = _OWNER_ID
_PUT_1_8["required"] += ["project_id", "user_id"]

# 1.12: allocations keyed by provider uuid; "generation" is accepted and ignored.
_PUT_1_12: dict[str, Any] = {
    "type": "object",
    "properties": {
        "allocations": {
            "type": "object",
            "minProperties": 1,
            "patternProperties": {
                UUID_PATTERN: {
                    "type": "object",
                    "properties": {"generation": {"type": "integer"}, "resources": _RESOURCES},
                    "required": ["resources"],
                    "additionalProperties": False,
                }
            },
            "additionalProperties": False,
        },
        "project_id": _OWNER_ID,
        "user_id": _OWNER_ID,
    },
    "additionalProperties": False,
    "required": ["allocations", "project_id", "user_id"],
}

# What one consumer looks like in POST /allocations: empty allocations are allowed there.
_EMPTYABLE = copy.deepcopy(_PUT_1_12)
_EMPTYABLE["properties"]["allocations"]["minProperties"] = 0

# 1.28: consumer_generation is required (null for a consumer that does not exist yet), and
# PUT may send empty allocations too.
_PUT_1_28 = copy.deepcopy(_EMPTYABLE)
_PUT_1_28["properties"]["consumer_generation"] = {"type": ["integer", "null"]}
_PUT_1_28["required"].append("consumer_generation")

# 1.34: "mappings" (request group -> provider uuids) is accepted and not stored.
_PUT_1_34 = copy.deepcopy(_PUT_1_28)
_PUT_1_34["properties"]["mappings"] = {
    "type": "object",
    "minProperties": 1,
    "patternProperties": {
        GROUP_PATTERN: {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "format": "uuid"},
        }
    },
}

# 1.38: consumer_type is required.
_PUT_1_38 = copy.deepcopy(_PUT_1_34)
_PUT_1_38["properties"]["consumer_type"] = {
    "type": "string",
    "pattern": CONSUMER_TYPE_PATTERN,
    "minLength": 1,
    "maxLength": 255,
}
_PUT_1_38["required"].append("consumer_type")


def _many(one: dict[str, Any], min_consumers: int = 1) -> dict[str, Any]:
    return {
        "type": "object",
        "minProperties": min_consumers,
        "additionalProperties": False,
        "patternProperties": {UUID_PATTERN: one},
    }


PUT_1_0 = Schema(_PUT_1_0)
PUT_1_8 = Schema(_PUT_1_8)
PUT_1_12 = Schema(_PUT_1_12)
PUT_1_28 = Schema(_PUT_1_28)
PUT_1_34 = Schema(_PUT_1_34)
PUT_1_38 = Schema(_PUT_1_38)

POST_1_13 = Schema(_many(_EMPTYABLE))
POST_1_28 = Schema(_many(_PUT_1_28))
POST_1_34 = Schema(_many(_PUT_1_34))
POST_1_38 = Schema(_many(_PUT_1_38))

# The allocations part of a reshaper body (may name no consumer at all).
MANY_1_28 = _many(_PUT_1_28, 0)
MANY_1_34 = _many(_PUT_1_34, 0)
MANY_1_38 = _many(_PUT_1_38, 0)


def put_schema(minor: int) -> Schema:
    """The PUT /allocations/{consumer_uuid} body schema at microversion 1.``minor``."""
    for since, schema in (
        (mv.CONSUMER_TYPES, PUT_1_38),
        (mv.MAPPINGS, PUT_1_34),
        (mv.CONSUMER_GENERATION, PUT_1_28),
        (mv.DICT_ALLOCATIONS, PUT_1_12),
    ):
        if minor >= since:
            return schema
    return PUT_1_8 if minor >= mv.ALLOCATION_OWNER else PUT_1_0


def post_schema(minor: int) -> Schema:
    """The POST /allocations body schema at microversion 1.``minor`` (1.13 and later)."""
    for since, schema in (
        (mv.CONSUMER_TYPES, POST_1_38),
        (mv.MAPPINGS, POST_1_34),
        (mv.CONSUMER_GENERATION, POST_1_28),
    ):
        if minor >= since:
            return schema
    return POST_1_13
