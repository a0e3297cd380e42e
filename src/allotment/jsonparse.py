"""Strict JSON for every request body of both APIs.

orjson is the parser: it refuses ``NaN``/``Infinity``, numbers that overflow a double,
lone surrogates (``"\\ud800"``, which no database column can store) and nesting deeper
than 1024; ``loads`` bounds nesting at ``MAX_DEPTH``, far below Python's recursion limit
(schema validation and its error messages recurse once per level). The standard library
is asked only for the wording of a syntax error (upstream Placement's messages are its),
never for a document orjson refused. Integers
must fit in 64 bits: anything wider is no count, size or generation any API takes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from allotment.errors import InvalidInput

# No body of either API nests deeper than about 10 levels.
MAX_DEPTH = 64
INT64 = 2**63
# A run of 19 digits is the only way a JSON text can hold an integer beyond 64 bits.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_REASONS = {
    "depth limit exceeded": f"arrays and objects nested deeper than {MAX_DEPTH} levels",
    "surrogate": "a lone UTF-16 surrogate escape (\\ud800-\\udfff) in a string",
    "infinity": "a number too large for a double",
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _reason(body: bytes, exc: orjson.JSONDecodeError) -> str:
    message = str(exc)
    for fragment, reason in _REASONS.items():
        if fragment in message:
            return reason
    try:
        json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as stdlib:
        return str(stdlib)
    return message


def _too_deep(data: Any) -> bool:
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _too_wide(data: Any) -> int | None:
    """The first integer in ``data`` outside the signed 64-bit range, if any."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not -INT64 <= item < INT64:
            return item
    return None


def loads(body: bytes | str) -> Any:
    """Parse a request body; InvalidInput (400) names what was wrong with it."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON: {_reason(raw, exc)}") from None
    # Fewer brackets than the bound cannot nest beyond it: most bodies skip the walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _too_deep(data):
        raise InvalidInput(
            f"Malformed JSON: arrays and objects nested deeper than {MAX_DEPTH} levels"
        )
    if _LONG_DIGITS.search(raw):
        wide = _too_wide(data)
        if wide is not None:
            raise InvalidInput(f"Malformed JSON: integer {wide} does not fit in 64 bits")
    return data
