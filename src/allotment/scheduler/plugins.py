"""Loading filters, weighers and request filters by name from entry points.

Only names in the allow-list load: the ones this package registers plus those an operator
lists in ``[plugins] allowed``. An unknown or disallowed name stops start-up with a
ConfigError that lists the names that would work — never a traceback, never a fallback.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from allotment.errors import ConfigError

FILTERS = "allotment.filters"
WEIGHERS = "allotment.weighers"
REQUEST_FILTERS = "allotment.request_filters"
_OWN_DISTRIBUTION = "allotment"


def _entry_points(group: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        # Our own registration wins over a third-party one of the same name.
        if ep.name not in found or _is_builtin(ep):
            found[ep.name] = ep
    return found


def _is_builtin(ep: EntryPoint) -> bool:
    dist = ep.dist
    return dist is not None and dist.name == _OWN_DISTRIBUTION


def builtin_names(group: str) -> list[str]:
    return sorted(name for name, ep in _entry_points(group).items() if _is_builtin(ep))


def load(
    group: str,
    names: Sequence[str],
    allowed: Collection[str],
    base: type,
    option: str,
) -> list[type[Any]]:
    """The classes registered under ``names`` in ``group``, in order."""
    available = _entry_points(group)
    permitted = {n for n, ep in available.items() if _is_builtin(ep) or n in allowed}
    unknown = [n for n in names if n not in available]
    disallowed = [n for n in names if n in available and n not in permitted]
    if unknown or disallowed:
        lines = [f"{option}: cannot load {', '.join(unknown + disallowed)}"]
        if unknown:
            lines.append(f"  not installed (no '{group}' entry point): {', '.join(unknown)}")
        if disallowed:
            lines.append(
                "  installed but not allowed; add them to [plugins] allowed to load them: "
                + ", ".join(disallowed)
            )
        lines.append(f"  valid names: {', '.join(sorted(permitted)) or '(none)'}")
        raise ConfigError("\n".join(lines))
    classes: list[type[Any]] = []
    for name in names:
        try:
            loaded: Any = available[name].load()
        except Exception as exc:  # a broken plugin must not become a traceback at start-up
            raise ConfigError(f"{option}: plugin {name!r} failed to import: {exc}") from None
        if not (isinstance(loaded, type) and issubclass(loaded, base)):
            raise ConfigError(
                f"{option}: plugin {name!r} ({available[name].value}) is not a "
                f"{base.__name__} subclass"
            )
        classes.append(loaded)
    return classes
