"""Fuzzing a live ``allotment serve``: schemathesis from ``/openapi.json`` (bounded
examples per operation) and hypothesis for what the document cannot express (raw bytes,
deep and huge bodies, odd headers and microversions). 0 server errors, 0 hangs, and no
write after a 4xx: the ledger (providers with their generations, resource classes,
traits) is the same before and after every refused request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HEADERS = {"x-auth-token": "admin", "openstack-api-version": "placement latest"}
TIMEOUT = 15.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    live = LiveServer(f"sqlite:///{tmp / 'db.sqlite'}", tmp / "state")
    with httpx.Client(base_url=live.url, headers=HEADERS) as client:
        client.post("/resource_providers", json={"name": "seed"})
    yield live
    live.stop()


def ledger(url: str) -> tuple[Any, ...]:
    with httpx.Client(base_url=url, headers=HEADERS, timeout=TIMEOUT) as client:
        providers = client.get("/resource_providers").json()["resource_providers"]
        return (
            sorted((p["uuid"], p["name"], p["generation"]) for p in providers),
            client.get("/resource_classes").json(),
            client.get("/traits").json(),
        )


def test_openapi_fuzz(server: LiveServer) -> None:
    """Every operation of the document, a bounded number of generated cases each."""
    loaded = schemathesis.openapi.from_url(server.url + "/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in loaded.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        def run(case: Any) -> None:
            before = ledger(server.url)
            response = case.call(base_url=server.url, headers=HEADERS, timeout=TIMEOUT)
            what = f"{case.method} {case.formatted_path} -> {response.status_code}"
            assert response.status_code < 500, f"{what}: {response.text[:300]}"
            if 400 <= response.status_code < 500:
                assert ledger(server.url) == before, f"{what} wrote: {response.text[:300]}"

        try:
            run()
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
    assert operations >= 30
    assert not failures, "\n".join(failures)


PATHS = [
    ("POST", "/resource_providers"),
    ("PUT", "/resource_providers/{rp}"),
    ("PUT", "/resource_providers/{rp}/inventories"),
    ("PUT", "/resource_providers/{rp}/traits"),
    ("POST", "/allocations"),
    ("POST", "/reshaper"),
    ("POST", "/scheduler/v1/select_destinations"),
    ("PUT", "/scheduler/v1/hosts/h1"),
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=2000),
    st.integers(min_value=1, max_value=20000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=20000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.sampled_from([b"NaN", b'{"name": "\\ud800"}', b"1e999", b'{"name": 1' + b"0" * 400 + b"}"]),
    json_values.map(lambda v: httpx.Request("POST", "/", json=v).content),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "openstack-api-version": st.one_of(
            st.sampled_from(["placement 1.0", "placement 1.39", "placement 9.99", "latest"]),
            st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
        ),
        "content-type": st.sampled_from(["application/json", "text/plain", "", "application/*"]),
        "accept": st.sampled_from(["application/json", "text/html", "*/*", "image/png"]),
        "x-auth-token": st.sampled_from(["admin", "", "x" * 9000]),
    },
)


@given(where=st.sampled_from(PATHS), body=bodies, extra=headers)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_raw_fuzz(
    server: LiveServer, where: tuple[str, str], body: bytes, extra: dict[str, str]
) -> None:
    method, path = where
    path = path.replace("{rp}", "00000000-0000-0000-0000-000000000001")
    before = ledger(server.url)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        response = client.request(
            method,
            path,
            content=body,
            headers={**HEADERS, "content-type": "application/json", **extra},
        )
    assert response.status_code < 500, (method, path, body[:200], extra, response.text[:300])
    if 400 <= response.status_code < 500:
        assert ledger(server.url) == before
