"""Query-string schemas of ``GET /allocation_candidates`` per microversion.

They mirror upstream's key for key: the messages clients see for a bad key (e.g. "'limit'
was unexpected", "'resources01' does not match any of the regexes: ...") come from them.
"""

from __future__ import annotations

import copy
from typing import Any

from allotment.placement import microversions as mv
from allotment.placement.schemas import Schema

_GROUP = r"[1-9][0-9]*"
_GROUP_1_33 = r"[a-zA-Z0-9_-]{1,64}"
_STRING = {"type": "string"}

_1_10: dict[str, Any] = {
    "type": "object",
    "properties": {"resources": {"type": "string"}},
    "required": ["resources"],
    "additionalProperties": False,
}
_1_16 = copy.deepcopy(_1_10)
_1_16["properties"]["limit"] = {
    "type": ["integer", "string"],
    "pattern": "^[1-9][0-9]*$",
    "minimum": 1,
    "minLength": 1,
}
_1_17 = copy.deepcopy(_1_16)
_1_17["properties"]["required"] = {"type": ["string"]}
_1_21 = copy.deepcopy(_1_17)
_1_21["properties"]["member_of"] = {"type": ["string"]}
_1_25 = copy.deepcopy(_1_21)
for _key in ("resources", "required", "member_of"):
    del _1_25["properties"][_key]
del _1_25["required"]
_1_25["patternProperties"] = {
    f"^{key}({_GROUP})?$": dict(_STRING) for key in ("resources", "required", "member_of")
}
_1_25["properties"]["group_policy"] = {"type": "string", "enum": ["none", "isolate"]}
_1_31 = copy.deepcopy(_1_25)
_1_31["patternProperties"][f"^in_tree({_GROUP})?$"] = dict(_STRING)
_1_33 = copy.deepcopy(_1_31)
_1_33["patternProperties"] = {
    f"^{key}({_GROUP_1_33})?$": dict(_STRING)
    for key in ("resources", "required", "member_of", "in_tree")
}
_1_35 = copy.deepcopy(_1_33)
_1_35["properties"]["root_required"] = {"type": ["string"]}
_1_36 = copy.deepcopy(_1_35)
_1_36["properties"]["same_subtree"] = {"type": ["string"]}

_PREFIX = "Invalid query string parameters"
_BY_MINOR = {
    minor: Schema(schema, prefix=_PREFIX)
    for minor, schema in (
        (mv.ALLOCATION_CANDIDATES, _1_10),
        (mv.CANDIDATE_LIMIT, _1_16),
        (mv.CANDIDATE_TRAITS, _1_17),
        (mv.CANDIDATE_MEMBER_OF, _1_21),
        (mv.GRANULAR_GROUPS, _1_25),
        (mv.CANDIDATE_IN_TREE, _1_31),
        (mv.VERBOSE_SUFFIXES, _1_33),
        (mv.ROOT_REQUIRED, _1_35),
        (mv.SAME_SUBTREE, _1_36),
    )
}


def list_query(minor: int) -> Schema:
    """The query schema of ``GET /allocation_candidates`` at microversion 1.``minor``."""
    return _BY_MINOR[max(m for m in _BY_MINOR if m <= minor)]
