"""The cap on allocation candidates one request may produce (``[limits]
max_allocation_candidates``): it bounds the work and the body of the heaviest request.

Without ``limit``, the cap acts as one: candidates are spread evenly over trees, so a
truncated answer still offers every tree it can. A ``limit`` above the cap is refused
rather than silently cut: the caller asked for more than any answer will hold.
"""

from __future__ import annotations

from allotment import errors


def capped_limit(limit: int | None, cap: int) -> int | None:
    """The limit a search runs with; ``cap`` 0 means uncapped (a service built by hand)."""
    if not cap:
        return limit
    if limit is not None and limit > cap:
        raise errors.InvalidInput(
            f"limit={limit} is above this server's cap of {cap} allocation candidates per "
            "request ([limits] max_allocation_candidates); ask for at most that many.",
            code=errors.QUERYPARAM_BAD_VALUE,
        )
    return limit or cap
