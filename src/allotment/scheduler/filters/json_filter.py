"""JsonFilter: the ``query`` scheduler hint, a JSON expression over host attributes, e.g.
``[">=", "$free_ram_mb", 1024]`` or ``["and", [...], [...]]`` (Nova's grammar: ``=``,
``<``, ``>``, ``in``, ``<=``, ``>=``, ``not``, ``or``, ``and``; ``$name.key`` reads a host
attribute). A query over static attributes only is evaluated once per distinct value."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from allotment import jsonparse
from allotment.errors import InvalidInput
from allotment.scheduler.filters import host_attributes as attrs
from allotment.scheduler.framework import BoolArray, HostFilter, HostRecord, HostView, IntArray

# Evaluation recurses once per level: bounded well below Python's recursion limit.
MAX_QUERY_DEPTH = 32
Lookup = Callable[[list[str]], Any]


def _compare(op: Callable[[Any, Any], bool]) -> Callable[[list[Any]], bool]:
    def check(args: list[Any]) -> bool:
        if len(args) < 2:
            return False
        try:
            return all(op(args[0], other) for other in args[1:])
        except TypeError:
            return False

    return check


_COMMANDS: dict[str, Callable[[list[Any]], Any]] = {
    "=": _compare(operator.eq),
    "<": _compare(operator.lt),
    ">": _compare(operator.gt),
    "in": lambda args: len(args) >= 2 and args[0] in args[1:],
    "<=": _compare(operator.le),
    ">=": _compare(operator.ge),
    "not": lambda args: [not a for a in args],
    "or": any,
    "and": all,
}


def _variables(query: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(query, list):
        for item in query[1:]:
            found |= _variables(item)
    elif isinstance(query, str) and query.startswith("$"):
        found.add(query[1:].split(".")[0])
    return found


def _evaluate(query: Any, lookup: Lookup) -> Any:
    if not query:
        return True
    command = _COMMANDS[query[0]]
    cooked: list[Any] = []
    for arg in query[1:]:
        if isinstance(arg, list):
            arg = _evaluate(arg, lookup)
        elif isinstance(arg, str):
            if not arg:
                arg = None
            elif arg.startswith("$"):
                arg = lookup(arg[1:].split("."))
        if arg is not None:
            cooked.append(arg)
    return command(cooked)


def _passes(query: Any, lookup: Lookup) -> bool:
    result = _evaluate(query, lookup)
    if isinstance(result, list):
        return any(result)
    return bool(result)


def _validate(query: Any, depth: int = 1) -> None:
    if depth > MAX_QUERY_DEPTH:
        raise InvalidInput(f"Scheduler hint 'query' is nested deeper than {MAX_QUERY_DEPTH} levels")
    if not isinstance(query, list):
        raise InvalidInput("Scheduler hint 'query' must be a JSON list such as [\">=\", ...]")
    if query and query[0] not in _COMMANDS:
        raise InvalidInput(
            f"Scheduler hint 'query': unknown operator {query[0]!r} (known: {', '.join(_COMMANDS)})"
        )
    for item in query[1:]:
        if isinstance(item, list):
            _validate(item, depth + 1)


def _parse(raw: Any) -> Any:
    try:
        query = jsonparse.loads(raw) if isinstance(raw, str) else raw
    except InvalidInput as exc:
        raise InvalidInput(f"Scheduler hint 'query' is not valid JSON: {exc.message}") from None
    _validate(query)
    return query


class JsonFilter(HostFilter):
    vectorized = False
    reason_code = "query"

    def prepare(self, view: HostView) -> bool:
        return bool(view.spec.hint("query"))

    def _query(self, view: HostView) -> Any:
        """The parsed query, once per request (a malformed one fails the request only
        when the filter runs, as in Nova)."""
        return view.state.cached(self.name, lambda: _parse(view.spec.hint("query")))

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        query = self._query(view)
        names = _variables(query)
        if not names & attrs.DYNAMIC.keys():
            return self._static(view, query, sorted(names), pos)

        def host_passes(p: int) -> bool:
            return _passes(query, lambda path: attrs.lookup(view, p, path))

        return np.fromiter(map(host_passes, pos.tolist()), np.bool_, len(pos))

    def _static(self, view: HostView, query: Any, names: list[str], pos: IntArray) -> BoolArray:
        def read(record: HostRecord) -> str:
            # The referenced attributes, JSON-encoded so any value can be a lookup key.
            return json.dumps([attrs.first_level(record, n) for n in names], sort_keys=True)

        def evaluate(encoded: str) -> bool:
            values = dict(zip(names, json.loads(encoded), strict=True))
            return _passes(query, lambda path: attrs.walk(values.get(path[0]), path[1:]))

        return view.per_value(("json", tuple(names)), read, evaluate, pos)

    def reason(self, view: HostView, pos: int) -> str:
        return f"does not satisfy the query hint {view.spec.hint('query')}"
