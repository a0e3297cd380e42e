"""Output for people (rich tables) or for scripts (``--format json``, one document)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table


def console() -> Console:
    return Console(file=sys.stdout, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def emit_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items()) or "-"
    return str(value)


def table(
    title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], **kw: Any
) -> Table:
    found = Table(title=title, title_justify="left", **kw)
    for column in columns:
        numeric = column.endswith(("count", "fits", "total", "instances", "before", "after"))
        found.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        found.add_row(*(cell(v) for v in row))
    return found
