"""``GET /``: the version document (no authentication needed), naming any dependency
that is down."""

from __future__ import annotations

from starlette.responses import Response

from allotment.placement.api import microversion
from allotment.placement.api.http import PlacementRequest, index_free, newest


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


@index_free
def home(req: PlacementRequest) -> Response:
    document = version_document()
    down = req.raw.app.state.health.down()
    if down:
        # Only while something is down, so the healthy document is upstream's exactly.
        document["down"] = down
    return req.respond(document, last_modified=newest([]))
