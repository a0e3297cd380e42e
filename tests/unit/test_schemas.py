"""Schema validation: the fast validator and jsonschema must never let a body through that
either of them refuses."""

from __future__ import annotations

import logging

import pytest

from allotment.errors import InvalidInput
from allotment.placement.schemas import Schema

# fastjsonschema checks "date-time"; jsonschema only does with an optional package, which
# this project does not install, so the two disagree on a malformed value.
AT = Schema({"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}}})


def test_a_body_only_the_fast_validator_refuses_is_a_400(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING), pytest.raises(InvalidInput) as raised:
        AT.validate({"at": "not a time"})
    assert raised.value.message.startswith("JSON does not validate: ")
    assert "validators disagree" in caplog.text


def test_valid_and_invalid_bodies_as_before() -> None:
    assert AT.validate({"at": "2026-12-03T18:00:00Z"}) == {"at": "2026-12-03T18:00:00Z"}
    with pytest.raises(InvalidInput, match="JSON does not validate: 1 is not of type 'string'"):
        AT.validate({"at": 1})
