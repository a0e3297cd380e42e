"""The Placement route table: path template -> method -> handler."""

from __future__ import annotations

from allotment.placement.api import (
    aggregates,
    allocation_candidates,
    allocations,
    inventories,
    reshaper,
    resource_classes,
    resource_providers,
    root,
    traits,
    usages,
)
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
    (
        "/resource_providers/{uuid}/traits",
        {
            "GET": traits.get_provider_traits,
            "PUT": traits.set_provider_traits,
            "DELETE": traits.delete_provider_traits,
        },
    ),
    (
        "/resource_providers/{uuid}/aggregates",
        {"GET": aggregates.get_aggregates, "PUT": aggregates.set_aggregates},
    ),
    (
        "/resource_classes",
        {
            "GET": resource_classes.list_resource_classes,
            "POST": resource_classes.create_resource_class,
        },
    ),
    (
        "/resource_classes/{name}",
        {
            "GET": resource_classes.get_resource_class,
            "PUT": resource_classes.update_resource_class,
            "DELETE": resource_classes.delete_resource_class,
        },
    ),
    ("/traits", {"GET": traits.list_traits}),
    (
        "/traits/{name}",
        {"GET": traits.get_trait, "PUT": traits.put_trait, "DELETE": traits.delete_trait},
    ),
    ("/resource_providers/{uuid}/usages", {"GET": usages.list_for_provider}),
    ("/resource_providers/{uuid}/allocations", {"GET": allocations.list_for_provider}),
    ("/allocations", {"POST": allocations.set_for_consumers}),
    (
        "/allocations/{consumer_uuid}",
        {
            "GET": allocations.list_for_consumer,
            "PUT": allocations.set_for_consumer,
            "DELETE": allocations.delete_for_consumer,
        },
    ),
    ("/usages", {"GET": usages.totals}),
    ("/reshaper", {"POST": reshaper.reshape}),
]


def build_router() -> Router:
    return Router(
        [
            (path, {method: endpoint(fn) for method, fn in methods.items()})
            for path, methods in ROUTES
        ]
    )
