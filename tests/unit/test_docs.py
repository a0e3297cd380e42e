"""The generated reference pages are what the code says now, and say something about every
option (regenerate with ``python -m allotment.docs config > docs/configuration.md`` and
``python -m allotment.docs scheduler-api > docs/scheduler-api.md``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from allotment import config, docs

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize(
    ("page", "what"), [("configuration.md", "config"), ("scheduler-api.md", "scheduler-api")]
)
def test_the_checked_in_page_is_current(page: str, what: str) -> None:
    expected = docs.PAGES[what]()
    current = (DOCS / page).read_text()
    assert current == expected, (
        f"docs/{page} is out of date: run `python -m allotment.docs {what} > docs/{page}`"
    )


def test_every_option_is_described() -> None:
    missing = []
    for name, field in config.Settings.model_fields.items():
        section = field.annotation
        if not (isinstance(section, type) and issubclass(section, BaseModel)):
            continue
        comments = docs._comments(section)
        missing += [f"[{name}] {o}" for o in section.model_fields if not comments.get(o)]
    assert missing == [], "write a comment above each of these options in config.py"


def test_every_scheduler_route_is_in_the_reference_with_its_rule() -> None:
    page = (DOCS / "scheduler-api.md").read_text()
    from allotment.scheduler.api import ROUTES

    for method, path, _ in ROUTES:
        assert f"## {method} /scheduler/v1{path}\n" in page
        assert docs._rule_of(method, path), (method, path)


def test_an_unknown_page_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert docs.main(["nope"]) == 2
    assert "usage" in capsys.readouterr().err
