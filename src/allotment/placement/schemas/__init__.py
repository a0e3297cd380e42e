"""Query and body schemas of the Placement API, per microversion.

``Schema`` validates with a compiled fast path (fastjsonschema) and, only when a document
is invalid, asks ``jsonschema`` (the library upstream uses) for the message, so error texts
match upstream's while valid requests pay microseconds.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import fastjsonschema
import jsonschema

from allotment.errors import InvalidInput, ValidatorsDisagree

LOG = logging.getLogger(__name__)


def is_uuid_like(value: object) -> bool:
    """The uuid format Placement accepts: anything ``uuid.UUID`` parses, with or without dashes."""
    if not isinstance(value, str):
        return True  # format checks apply to strings only
    try:
        parsed = uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    plain = value.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "").lower()
    return parsed.hex == plain


_FORMAT_CHECKER = jsonschema.FormatChecker()
_FORMAT_CHECKER.checks("uuid")(is_uuid_like)


class Schema:
    """A compiled JSON schema; ``validate`` raises InvalidInput with upstream's message."""

    def __init__(self, schema: dict[str, Any], *, prefix: str = "JSON does not validate") -> None:
        self.schema = schema
        self.prefix = prefix
        self._fast = fastjsonschema.compile(schema, formats={"uuid": is_uuid_like})
        validator_cls = jsonschema.validators.validator_for(schema)
        self._slow = validator_cls(schema, format_checker=_FORMAT_CHECKER)

    def validate(self, document: Any) -> Any:
        try:
            self._fast(document)
        except fastjsonschema.JsonSchemaException as fast_error:
            error = jsonschema.exceptions.best_match(self._slow.iter_errors(document))
            if error is not None:
                raise InvalidInput(f"{self.prefix}: {error}") from None
            # The two validators disagree (e.g. a format only the fast one checks): the
            # document is still refused, with the fast validator's reason.
            LOG.warning(
                "schema validators disagree: fastjsonschema rejects (%s), jsonschema accepts",
                fast_error,
            )
            raise ValidatorsDisagree(f"{self.prefix}: {fast_error}") from None
        return document
