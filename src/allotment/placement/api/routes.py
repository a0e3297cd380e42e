"""The Placement route table: path template -> method -> handler."""

from __future__ import annotations

from allotment.placement.api import resource_providers, root
from allotment.placement.api.http import endpoint
from allotment.placement.api.routing import Router

ROUTES = [
    ("/", {"GET": root.home}),
    (
        "/resource_providers",
        {
            "GET": resource_providers.list_resource_providers,
            "POST": resource_providers.create_resource_provider,
        },
    ),
    (
        "/resource_providers/{uuid}",
        {
            "GET": resource_providers.get_resource_provider,
            "PUT": resource_providers.update_resource_provider,
            "DELETE": resource_providers.delete_resource_provider,
        },
    ),
]


def build_router() -> Router:
    return Router(
        [
            (path, {method: endpoint(fn) for method, fn in methods.items()})
            for path, methods in ROUTES
        ]
    )
