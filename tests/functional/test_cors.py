"""CORS as upstream (oslo.middleware): allowed origins are echoed, others get no headers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from allotment.app import build_services, create_app
from tests.conftest import make_settings

VALID = "http://valid.example.com"


@pytest.fixture
def cors_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path, cors={"allowed_origin": [VALID], "allow_headers": ["openstack-api-version"]}
    )
    with TestClient(create_app(build_services(settings))) as client:
        yield client


def test_preflight_from_an_allowed_origin(cors_client: TestClient) -> None:
    resp = cors_client.options(
        "/resource_providers",
        headers={
            "origin": VALID,
            "access-control-request-method": "GET",
            "access-control-request-headers": "openstack-api-version, x-other",
        },
    )
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == VALID
    assert resp.headers["access-control-allow-headers"] == "openstack-api-version"


def test_other_origins_get_no_cors_headers_but_no_error(cors_client: TestClient) -> None:
    headers = {"origin": "http://evil.example.com", "access-control-request-method": "GET"}
    resp = cors_client.options("/", headers=headers)
    assert resp.status_code == 200
    assert "access-control-allow-origin" not in resp.headers
    resp = cors_client.get("/", headers=headers)
    assert resp.status_code == 200
    assert "access-control-allow-origin" not in resp.headers


def test_simple_request_from_allowed_origin_still_needs_auth(cors_client: TestClient) -> None:
    resp = cors_client.get("/resource_providers", headers={"origin": VALID})
    assert resp.status_code == 401
    assert resp.headers["access-control-allow-origin"] == VALID
    resp = cors_client.get(
        "/resource_providers", headers={"origin": VALID, "x-auth-token": "admin"}
    )
    assert resp.status_code == 200
