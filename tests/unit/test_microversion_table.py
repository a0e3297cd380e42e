"""The microversion table lists every version once, and handlers name features, not numbers."""

from __future__ import annotations

import re
from pathlib import Path

from allotment.placement.api import microversion

API = Path(microversion.__file__).parent


def test_every_version_is_named_exactly_once() -> None:
    named = {
        name: value
        for name, value in vars(microversion).items()
        if name.isupper() and isinstance(value, int)
    }
    assert sorted(named.values()) == list(range(1, microversion.MAX.minor + 1))


def test_handlers_never_compare_with_a_bare_number() -> None:
    bare = re.compile(r"at_least\(\s*\d|require_version\(\s*\d|minor\s*[<>]=?\s*\d|\(1,\s*\d+\)")
    offenders = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(API.glob("*.py"))
        if path.name != "microversion.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if bare.search(line)
    ]
    assert offenders == []
