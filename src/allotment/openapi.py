"""The OpenAPI 3.1 document of both APIs, served at ``/openapi.json``.

Built from what the server validates with, so it cannot drift: Placement's operations are
its route table, their bodies and queries the JSON schemas of ``placement.schemas`` at the
latest microversion (``OpenStack-API-Version`` is a parameter of every operation); the
scheduler's operations are its route table, their bodies the pydantic request models.
JSON Schema 2020-12 is OpenAPI 3.1's own dialect, so the schemas go in unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from allotment import __version__
from allotment.placement import microversions
from allotment.placement.api.routes import ROUTES
from allotment.placement.schemas import Schema
from allotment.placement.schemas import aggregate as aggregate_schemas
from allotment.placement.schemas import allocation as allocation_schemas
from allotment.placement.schemas import allocation_candidate as candidate_schemas
from allotment.placement.schemas import inventory as inventory_schemas
from allotment.placement.schemas import reshaper as reshaper_schemas
from allotment.placement.schemas import resource_class as resource_class_schemas
from allotment.placement.schemas import resource_provider as provider_schemas
from allotment.placement.schemas import trait as trait_schemas
from allotment.placement.schemas import usage as usage_schemas
from allotment.scheduler import api as scheduler_api
from allotment.scheduler.capacity import CapacityRequest
from allotment.scheduler.manager import MAX_INSTANCES
from allotment.scheduler.records import AggregateBody, HostReport, InstanceInfo
from allotment.scheduler.request import RequestSpec

LATEST = microversions.MAX_VERSION[1]
_PLACEMENT_BODIES: dict[tuple[str, str], Schema] = {
    ("POST", "/resource_providers"): provider_schemas.POST_1_14,
    ("PUT", "/resource_providers/{uuid}"): provider_schemas.PUT_1_14,
    ("PUT", "/resource_providers/{uuid}/inventories"): inventory_schemas.PUT_ALL,
    ("POST", "/resource_providers/{uuid}/inventories"): inventory_schemas.POST,
    ("PUT", "/resource_providers/{uuid}/inventories/{resource_class}"): inventory_schemas.PUT_ONE,
    ("PUT", "/resource_providers/{uuid}/traits"): trait_schemas.SET_FOR_PROVIDER,
    ("PUT", "/resource_providers/{uuid}/aggregates"): aggregate_schemas.PUT_1_19,
    ("POST", "/resource_classes"): resource_class_schemas.NAME,
    ("POST", "/allocations"): allocation_schemas.post_schema(LATEST),
    ("PUT", "/allocations/{consumer_uuid}"): allocation_schemas.put_schema(LATEST),
    ("POST", "/reshaper"): reshaper_schemas.post_schema(LATEST),
}
_PLACEMENT_QUERIES: dict[tuple[str, str], Schema] = {
    ("GET", "/resource_providers"): provider_schemas.list_query(LATEST),
    ("GET", "/allocation_candidates"): candidate_schemas.list_query(LATEST),
    ("GET", "/traits"): trait_schemas.LIST_QUERY,
    ("GET", "/usages"): usage_schemas.QUERY_1_38,
}
_ERROR = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["status", "title", "detail", "request_id"],
                "properties": {
                    "status": {"type": "integer"},
                    "title": {"type": "string"},
                    "detail": {"type": "string"},
                    "code": {"type": "string"},
                    "request_id": {"type": "string"},
                },
            },
        }
    },
}
_MICROVERSION = {
    "name": "OpenStack-API-Version",
    "in": "header",
    "required": False,
    "description": f"placement 1.0 to placement 1.{LATEST}, or placement latest",
    "schema": {"type": "string", "example": f"placement 1.{LATEST}"},
}
_TOKEN = {"name": "X-Auth-Token", "in": "header", "required": False, "schema": {"type": "string"}}
_UUID = {"type": "string", "format": "uuid"}
_SELECTION = {
    "type": "object",
    "required": [
        "host",
        "nodename",
        "compute_node_uuid",
        "allocation_request",
        "allocation_request_version",
        "limits",
    ],
    "properties": {
        "host": {"type": "string"},
        "nodename": {"type": "string"},
        "compute_node_uuid": {"type": "string"},
        # null: nothing to claim (a rebuild check).
        "allocation_request": {"type": ["object", "null"]},
        "allocation_request_version": {"type": ["string", "null"]},
        "limits": {"type": "object"},
    },
}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", path)
    ]


def _responses(ok: int = 200, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"application/json": {"schema": schema or {"type": "object"}}}
    return {
        str(ok): {"description": "success", "content": body}
        if ok != 204
        else {"description": "success, no body"},
        "default": {
            "description": "an error (4xx: what was wrong; 503: what is down)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
    }


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _placement_paths() -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    for path, methods in ROUTES:
        item = paths.setdefault(path, {})
        for method, handler in methods.items():
            parameters = [_MICROVERSION, _TOKEN, *_path_parameters(path)]
            query = _PLACEMENT_QUERIES.get((method, path))
            if query is not None:
                parameters.append(
                    {
                        "name": "query",
                        "in": "query",
                        "style": "form",
                        "explode": True,
                        "schema": query.schema,
                    }
                )
            operation: dict[str, Any] = {
                "operationId": f"placement.{handler.__name__}",
                "tags": ["placement"],
                "summary": (handler.__doc__ or handler.__name__).strip().splitlines()[0],
                "parameters": parameters,
                "responses": _responses(204 if method == "DELETE" else 200),
            }
            body = _PLACEMENT_BODIES.get((method, path))
            if body is not None:
                operation["requestBody"] = _json_body(body.schema)
            item[method.lower()] = operation
    return paths


def _decision_body(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["instance_uuids", "request_spec"],
        "additionalProperties": False,
        "properties": {
            "instance_uuids": {
                "type": "array",
                "items": _UUID,
                "minItems": 1,
                "maxItems": MAX_INSTANCES,
            },
            "request_spec": {"$ref": "#/components/schemas/RequestSpec"},
            "return_alternates": {"type": "boolean"},
            **(extra or {}),
        },
    }


def _scheduler_operations() -> dict[str, tuple[dict[str, Any] | None, int, dict[str, Any]]]:
    """Per scheduler handler: request body schema, success status, response schema."""
    ref = "#/components/schemas/"
    return {
        "select_destinations": (
            _decision_body(),
            200,
            {
                "type": "object",
                "properties": {
                    "selections": {"type": "array", "items": {"type": "array", "items": _SELECTION}}
                },
            },
        ),
        "explain": (
            _decision_body({"hosts": {"type": "integer", "minimum": 0, "maximum": 1000}}),
            200,
            {"type": "object"},
        ),
        "list_hosts": (None, 200, {"type": "object", "properties": {"hosts": {"type": "array"}}}),
        "show_host": (
            None,
            200,
            {
                "type": "object",
                "properties": {"host": {"type": "string"}, "nodes": {"type": "array"}},
            },
        ),
        "put_host": ({"$ref": ref + "HostReport"}, 200, {"type": "object"}),
        "delete_host": (None, 204, {}),
        "put_instances": (
            {
                "type": "object",
                "required": ["instances"],
                "properties": {
                    "instances": {"type": "array", "items": {"$ref": ref + "InstanceInfo"}}
                },
            },
            204,
            {},
        ),
        "delete_instance": (None, 204, {}),
        "sync_instances": (
            {
                "type": "object",
                "required": ["instance_uuids"],
                "properties": {"instance_uuids": {"type": "array", "items": {"type": "string"}}},
            },
            200,
            {"type": "object"},
        ),
        "put_aggregate": ({"$ref": ref + "AggregateBody"}, 200, {"type": "object"}),
        "delete_aggregate": (None, 204, {}),
        "capacity": (
            {"$ref": ref + "CapacityRequest"},
            200,
            {
                "type": "object",
                "properties": {"flavors": {"type": "array", "items": {"type": "object"}}},
            },
        ),
        "reset": (None, 200, {"type": "object"}),
    }


def _scheduler_paths(prefix: str) -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    operations = _scheduler_operations()
    for method, path, handler in scheduler_api.ROUTES:
        body, ok, response = operations[handler.__name__]
        operation: dict[str, Any] = {
            "operationId": f"scheduler.{handler.__name__}",
            "tags": ["scheduler"],
            "summary": (handler.__doc__ or handler.__name__).strip().splitlines()[0],
            "parameters": [_TOKEN, *_path_parameters(path)],
            "responses": _responses(ok, response),
        }
        if body is not None:
            operation["requestBody"] = _json_body(body)
        paths.setdefault(prefix + path, {})[method.lower()] = operation
    return paths


def _model_schemas(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def document(scheduler_prefix: str = "/scheduler/v1") -> dict[str, Any]:
    """The whole document; build once per process (it does not change while serving)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "allotment: OpenStack Placement API and scheduler API",
            "version": __version__,
            "description": f"Placement at microversion 1.{LATEST}; the scheduler under "
            f"{scheduler_prefix}.",
        },
        "paths": {**_placement_paths(), **_scheduler_paths(scheduler_prefix.rstrip("/"))},
        "components": {
            "schemas": {
                "Error": _ERROR,
                **_model_schemas(
                    [RequestSpec, HostReport, AggregateBody, InstanceInfo, CapacityRequest]
                ),
            }
        },
    }
