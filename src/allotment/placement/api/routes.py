"""The Placement route table: path template -> method -> handler."""

from __future__ import annotations

from allotment.placement.api import allocation_candidates, inventories, resource_providers, root
from allotment.placement.api.http import Handler, endpoint
from allotment.placement.api.routing import Router

ROUTES: list[tuple[str, dict[str, Handler]]] = [
    ("/", {"GET": root.home}),
    ("/allocation_candidates", {"GET": allocation_candidates.list_allocation_candidates}),
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
    (
        "/resource_providers/{uuid}/inventories",
        {
            "GET": inventories.get_inventories,
            "PUT": inventories.set_inventories,
            "POST": inventories.create_inventory,
            "DELETE": inventories.delete_inventories,
        },
    ),
    (
        "/resource_providers/{uuid}/inventories/{resource_class}",
        {
            "GET": inventories.get_inventory,
            "PUT": inventories.update_inventory,
            "DELETE": inventories.delete_inventory,
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
