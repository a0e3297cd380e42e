"""Strict integer parsing for text that comes from callers (query strings, extra specs).

Python's ``int()`` accepts ``1_000`` and any Unicode digit (``"١٢"`` is 12); neither is a
number in an OpenStack API. Surrounding ASCII whitespace is accepted, as upstream Placement
accepts it (its conformance suite sends ``resources=DISK_GB:10 `` from folded YAML).
Every parse here is bounded too, so no amount reaches a database column, a loop or an
allocation that it would overflow or exhaust.
"""

from __future__ import annotations

import re

# The SQL ``INTEGER`` columns Placement stores totals and amounts in (upstream's MAX_INT).
DB_MAX_INT = 2**31 - 1
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}", re.ASCII)


def parse_int(text: str, *, minimum: int = 0, maximum: int = DB_MAX_INT) -> int | None:
    """``text`` as an integer in ``[minimum, maximum]``, or None when it is not one: ASCII
    digits with an optional sign, nothing else."""
    text = text.strip(" \t\r\n")
    if not _INTEGER.fullmatch(text):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None
