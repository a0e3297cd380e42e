"""Microversion negotiation (``OpenStack-API-Version: placement X.Y``); the versions
themselves are listed in ``placement/microversions.py``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import total_ordering

from allotment.errors import InvalidInput, NotAcceptable
from allotment.placement.microversions import MAX_VERSION, MIN_VERSION

SERVICE_TYPE = "placement"
HEADER = "openstack-api-version"


@total_ordering
@dataclass(frozen=True, slots=True)
class Microversion:
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Microversion):
            return (self.major, self.minor) < (other.major, other.minor)
        if isinstance(other, tuple):
            return (self.major, self.minor) < other
        return NotImplemented

    def at_least(self, minor: int) -> bool:
        """True when this request's version is 1.``minor`` or later."""
        return self.minor >= minor

    @property
    def header_value(self) -> str:
        return f"{SERVICE_TYPE} {self}"


MIN = Microversion(*MIN_VERSION)
MAX = Microversion(*MAX_VERSION)


def _placement_value(header: str) -> str | None:
    # The header may name several services: "compute 2.1, placement 1.5".
    for item in header.split(","):
        parts = item.strip().split(None, 1)
        if len(parts) == 2 and parts[0].lower() == SERVICE_TYPE:
            return parts[1].strip()
    return None


def parse(header: str | None) -> Microversion:
    """The microversion a request asks for; 1.0 when it names none."""
    if not header:
        return MIN
    value = _placement_value(header)
    if value is None:
        return MIN
    if value.lower() == "latest":
        return MAX
    try:
        major_text, minor_text = value.split(".")
        version = Microversion(int(major_text), int(minor_text))
    except ValueError as exc:
        raise InvalidInput(
            f"Invalid microversion: invalid version string: {value}; {exc}"
        ) from None
    if version < MIN or version > MAX:
        raise NotAcceptable(
            f"Invalid microversion: Unacceptable version header: {value}",
            max_version=str(MAX),
            min_version=str(MIN),
        )
    return version
