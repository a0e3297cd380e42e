"""``GET /``: the version document (no authentication needed)."""

from __future__ import annotations

from starlette.responses import Response

from allotment.placement.api import microversion
from allotment.placement.api.http import PlacementRequest, newest


def version_document() -> dict[str, object]:
    return {
        "versions": [
            {
                "id": f"v{microversion.MIN.major}.0",
                "max_version": str(microversion.MAX),
                "min_version": str(microversion.MIN),
                "status": "CURRENT",
                "links": [{"rel": "self", "href": ""}],
            }
        ]
    }


def home(req: PlacementRequest) -> Response:
    return req.respond(version_document(), last_modified=newest([]))
