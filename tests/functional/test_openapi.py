"""``/openapi.json``: an OpenAPI 3.1 document of both APIs, public, holding every route
the routers serve with the very schemas the handlers validate with."""

from __future__ import annotations

import jsonschema

from allotment.placement.api.routes import ROUTES
from allotment.placement.schemas import inventory, resource_provider
from allotment.scheduler.api import ROUTES as SCHEDULER_ROUTES
from tests.conftest import PlacementClient


def test_document_is_public_and_lists_every_route(client: PlacementClient) -> None:
    response = client.client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"] == "3.1.0"
    served = {(method.lower(), path) for path, methods in ROUTES for method in methods}
    served |= {(m.lower(), "/scheduler/v1" + p) for m, p, _ in SCHEDULER_ROUTES}
    listed = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert served == listed
    for item in doc["paths"].values():
        for operation in item.values():
            assert operation["operationId"] and operation["responses"]


def test_schemas_are_the_validating_ones(client: PlacementClient) -> None:
    doc = client.client.get("/openapi.json").json()
    paths = doc["paths"]
    body = paths["/resource_providers"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == resource_provider.POST_1_14.schema
    put_all = paths["/resource_providers/{uuid}/inventories"]["put"]["requestBody"]
    assert put_all["content"]["application/json"]["schema"] == inventory.PUT_ALL.schema
    header = paths["/allocation_candidates"]["get"]["parameters"][0]
    assert header["name"] == "OpenStack-API-Version" and header["in"] == "header"
    spec = doc["components"]["schemas"]["RequestSpec"]
    assert "flavor" in spec["required"]
    # Every schema is valid JSON Schema 2020-12 (OpenAPI 3.1's dialect).
    for path_item in paths.values():
        for operation in path_item.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                if "$ref" not in media["schema"]:
                    jsonschema.Draft202012Validator.check_schema(media["schema"])
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
