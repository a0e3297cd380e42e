"""Nova's extra-spec match operators, used by ComputeCapabilitiesFilter and
AggregateInstanceExtraSpecsFilter.

``"= 4"`` (at least, numerically), ``"== 4"``, ``"!= 4"``, ``">= 4"``, ``"<= 4"``,
``"s== x"`` and the other string comparisons, ``"<in> x"`` (substring), ``"<all-in> a b"``,
``"<or> a <or> b"``; anything else must equal the value exactly.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any


def _float_op(compare: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def check(value: Any, wanted: Any) -> bool:
        try:
            return compare(float(value), float(wanted))
        except ValueError:
            # Nova raises here and the request fails; a non-number simply does not match.
            return False

    return check


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": _float_op(operator.ge),
    "<in>": lambda value, wanted: wanted in value,
    "<all-in>": lambda value, wanted: all(v in value for v in wanted),
    "==": _float_op(operator.eq),
    "!=": _float_op(operator.ne),
    ">=": _float_op(operator.ge),
    "<=": _float_op(operator.le),
    "s==": operator.eq,
    "s!=": operator.ne,
    "s<": operator.lt,
    "s<=": operator.le,
    "s>": operator.gt,
    "s>=": operator.ge,
}


def match(value: Any, req: str) -> bool:
    words = req.split()
    op = None
    method = None
    if words:
        op = words.pop(0)
        method = _OPS.get(op)
    if op != "<or>" and not method:
        return bool(value == req)
    if value is None:
        return False
    if op == "<or>":
        while words:
            if words.pop(0) == value:
                return True
            if not words:
                break
            words.pop(0)
        return False
    assert method is not None
    if words:
        if op == "<all-in>":
            return method(value, words)
        return method(value, words[0])
    return False
