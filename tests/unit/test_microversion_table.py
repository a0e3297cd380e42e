"""The microversion table lists every version once, and neither the handlers nor the schemas
compare with a bare number: they name the feature."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from allotment.placement import microversions

PLACEMENT = Path(microversions.__file__).parent
# A comparison with a number, a (1, N) version tuple, or a (N, SCHEMA) / (N, "param")
# table entry keyed by a number.
BARE = re.compile(
    r"at_least\(\s*\d|require_version\(\s*\d|minor\s*[<>]=?\s*\d|\(1,\s*\d+\)"
    r'|\(\s*[1-9]\d*,\s*(_|[A-Z]|")'
)


def test_every_version_is_named_exactly_once() -> None:
    named = {
        name: value
        for name, value in vars(microversions).items()
        if name.isupper() and isinstance(value, int)
    }
    assert sorted(named.values()) == list(range(1, microversions.MAX_VERSION[1] + 1))


@pytest.mark.parametrize("folder", ["api", "schemas"])
def test_no_bare_version_numbers(folder: str) -> None:
    paths = sorted((PLACEMENT / folder).glob("*.py"))
    assert paths
    offenders = [
        f"{path.name}:{number}: {line.strip()}"
        for path in paths
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if BARE.search(line)
    ]
    assert offenders == []


def test_the_check_sees_a_bare_number() -> None:
    for line in ("if minor >= 38:", "((38, PUT_1_38),", '(3, "member_of", {}),', "(10, _1_10),"):
        assert BARE.search(line), line
    assert not BARE.search("max(1, len(sets).bit_length())")
