"""Schemas for /resource_classes."""

from __future__ import annotations

from typing import Any

from allotment.errors import InvalidInput, ValidatorsDisagree
from allotment.placement.schemas import Schema

# Only custom classes can be created or renamed through the API.
CUSTOM_PATTERN = "^CUSTOM_[A-Z0-9_]+$"

_NAME: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "pattern": CUSTOM_PATTERN, "maxLength": 255}},
    "required": ["name"],
    "additionalProperties": False,
}

# The POST body, the PUT body up to 1.6, and the path name of PUT from 1.7.
NAME = Schema(_NAME)


def validate_name(data: Any) -> Any:
    """Check a ``{"name": ...}`` document; also refuses the trailing newline that the
    pattern's ``$`` lets through, so no class name ever carries a line break."""
    try:
        return NAME.validate(data)
    except ValidatorsDisagree:
        # fastjsonschema's "$" does not match before a final newline, jsonschema's does:
        # word that refusal as the pattern mismatch it is.
        name = data["name"]
        if not name.endswith("\n"):
            raise
        raise InvalidInput(
            f"JSON does not validate: {name!r} does not match {CUSTOM_PATTERN!r}"
        ) from None
