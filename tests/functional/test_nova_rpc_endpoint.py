"""The Nova RPC endpoint refuses what it cannot answer with the reason, and converts the
caller's context without dropping it (the RabbitMQ round trips are in
tests/integration/nova)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import oslo_messaging
import pytest

from allotment.app import Services
from allotment.context import RequestContext
from allotment.scheduler.nova import objects
from allotment.scheduler.nova.rpc import ContextSerializer, RequestRefused, SchedulerEndpoint

FLAVOR = objects.primitive("Flavor", "1.2", {"name": "f", "vcpus": 1, "memory_mb": 512})


def refused(call: Callable[[], Any]) -> str:
    """The reason a call was refused with: oslo.messaging's expected_exceptions wraps the
    exception the caller receives (without a traceback logged) in ExpectedException."""
    with pytest.raises(oslo_messaging.ExpectedException) as caught:
        call()
    error = caught.value.exc_info[1]
    assert isinstance(error, RequestRefused)
    return str(error)


@pytest.fixture
def endpoint(services: Services) -> SchedulerEndpoint:
    assert services.scheduler is not None and services.host_manager is not None
    return SchedulerEndpoint(services.settings, services.scheduler, services.host_manager)


def nova_context() -> RequestContext:
    return ContextSerializer().deserialize_context(
        {
            "user_id": "u1",
            "project_id": "p1",
            "roles": ["member"],
            "is_admin": False,
            "request_id": "req-1a2b",
            "global_request_id": "req-9f8e",
            "auth_token": "never-kept",
        }
    )


def test_the_callers_context_is_kept_and_trusted_as_a_service() -> None:
    ctx = nova_context()
    assert (ctx.user_id, ctx.project_id) == ("u1", "p1")
    assert ctx.roles == frozenset({"member", "service"})
    assert (ctx.request_id, ctx.global_request_id) == ("req-1a2b", "req-9f8e")
    assert "never-kept" not in repr(ctx)
    admin = ContextSerializer().deserialize_context({"is_admin": True, "roles": []})
    assert admin.is_admin and admin.request_id.startswith("req-")


def test_an_unreadable_legacy_4_0_form_is_refused_naming_the_field(
    endpoint: SchedulerEndpoint,
) -> None:
    """The 4.0 dicts themselves are read (tests/integration/nova drives Nova's own); a
    flavorless one Nova could not read either is refused with where it fails."""
    reason = refused(
        lambda: endpoint.select_destinations(
            nova_context(), request_spec={"instance_type": {}}, filter_properties={}
        )
    )
    assert "request_spec.instance_type: the request spec has no flavor" in reason


def test_an_unreadable_spec_is_refused_with_the_reason(endpoint: SchedulerEndpoint) -> None:
    spec = objects.primitive("RequestSpec", "2.0", {"project_id": "p1", "flavor": FLAVOR})
    reason = refused(
        lambda: endpoint.select_destinations(nova_context(), spec_obj=spec, instance_uuids=None)
    )
    assert "RequestSpec 2.0 is not understood" in reason


def test_a_call_without_a_context_is_refused(endpoint: SchedulerEndpoint) -> None:
    spec = objects.primitive("RequestSpec", "1.15", {"project_id": "p1", "flavor": FLAVOR})
    reason = refused(
        lambda: endpoint.select_destinations({"user_id": "u1"}, spec_obj=spec, instance_uuids=None)
    )
    assert "no request context" in reason
