"""Request filters against Nova's semantics (and our one deliberate difference)."""

from __future__ import annotations

from typing import Any

import pytest

from allotment.context import RequestContext
from allotment.errors import NoValidHost
from allotment.scheduler.cycle.driver import PreparedRequest
from allotment.scheduler.request import parse_request_spec
from tests.unit.scheduler.helpers import Cloud, spec


def prepare(cloud: Cloud, body: dict[str, Any]) -> PreparedRequest:
    pipeline = cloud.pipeline()
    return pipeline.prepare(RequestContext.internal(), parse_request_spec(body), cloud.snapshot())


def test_compute_status_filter_always_forbids_disabled() -> None:
    assert prepare(Cloud(), spec()).resources.root_forbidden == {"COMPUTE_STATUS_DISABLED"}


class TestAvailabilityZones:
    def cloud(self) -> tuple[Cloud, str, str]:
        cloud = Cloud()
        cloud.host("a")
        z1 = cloud.aggregate("z1", ["a"], availability_zone="az1")
        z1b = cloud.aggregate("z1b", [], availability_zone="az1")
        cloud.aggregate("z2", [], availability_zone="az2")
        return cloud, z1, z1b

    def test_zone_maps_to_its_aggregates(self) -> None:
        cloud, z1, z1b = self.cloud()
        prepared = prepare(cloud, spec(availability_zone="az1"))
        assert prepared.resources.groups[""].member_of == [frozenset({z1, z1b})]
        assert prepared.funnel.stages[0].name == "map_az_to_placement_aggregate"

    def test_unknown_zone_is_no_valid_host(self) -> None:
        cloud, _, _ = self.cloud()
        with pytest.raises(NoValidHost, match="Availability zone 'az9' does not exist") as caught:
            prepare(cloud, spec(availability_zone="az9"))
        explanation = caught.value.extra["explanation"]
        assert explanation["emptied_by"] == {
            "stage": "map_az_to_placement_aggregate",
            "kind": "request_filter",
        }

    def test_default_zone_means_outside_every_zone_aggregate(self) -> None:
        cloud, _, _ = self.cloud()
        prepared = prepare(cloud, spec(availability_zone="nova"))
        group = prepared.resources.groups[""]
        assert group.member_of == []
        assert len(group.forbidden_aggregates) == 3

    def test_disabled_mapping_leaves_the_query_alone(self) -> None:
        cloud, _, _ = self.cloud()
        cloud.sections["scheduler"] = {"query_placement_for_availability_zone": False}
        assert prepare(cloud, spec(availability_zone="az9")).resources.groups[""].member_of == []


class TestTenantAggregates:
    def cloud(self, **options: Any) -> tuple[Cloud, str]:
        cloud = Cloud(scheduler={"limit_tenants_to_placement_aggregate": True, **options})
        cloud.host("a")
        mine = cloud.aggregate("mine", ["a"], filter_tenant_id="p1", filter_tenant_id2="p3")
        cloud.aggregate("theirs", [], filter_tenant_id="p2")
        cloud.aggregate("not-a-tenant-key", [], owner="p1")
        return cloud, mine

    def test_tenant_goes_to_its_aggregates(self) -> None:
        cloud, mine = self.cloud()
        assert prepare(cloud, spec()).resources.groups[""].member_of == [frozenset({mine})]

    def test_tenant_without_aggregate(self) -> None:
        cloud, _ = self.cloud()
        assert prepare(cloud, spec(project_id="p9")).resources.groups[""].member_of == []
        cloud, _ = self.cloud(placement_aggregate_required_for_tenants=True)
        with pytest.raises(NoValidHost, match="No hosts available for tenant"):
            prepare(cloud, spec(project_id="p9"))

    def test_off_by_default(self) -> None:
        cloud, _ = self.cloud()
        cloud.sections["scheduler"] = {}
        assert prepare(cloud, spec()).resources.groups[""].member_of == []


def test_image_type_support() -> None:
    cloud = Cloud(scheduler={"query_placement_for_image_type_support": True})
    body = spec(image={"id": "i", "disk_format": "qcow2"})
    assert "COMPUTE_IMAGE_TYPE_QCOW2" in prepare(cloud, body).resources.root_required
    body = spec(image={"id": "i", "disk_format": "qcow2"}, is_bfv=True)
    assert prepare(cloud, body).resources.root_required == set()
    body = spec(image={"id": "i", "disk_format": "nonsense"})
    assert prepare(cloud, body).resources.root_required == set()


def test_isolate_aggregates() -> None:
    cloud = Cloud(scheduler={"enable_isolated_aggregate_filtering": True})
    cloud.host("a")
    gpu = cloud.aggregate("gpu", [], **{"trait:CUSTOM_GPU": "required"})
    cloud.aggregate("soft", [], **{"trait:CUSTOM_SOFT": "preferred"})
    prepared = prepare(cloud, spec())
    assert prepared.resources.groups[""].forbidden_aggregates == {gpu}
    body = spec(flavor={"extra_specs": {"trait:CUSTOM_GPU": "required"}})
    assert prepare(cloud, body).resources.groups[""].forbidden_aggregates == set()


def test_transform_image_metadata() -> None:
    cloud = Cloud(scheduler={"image_metadata_prefilter": True})
    props = {"hw_disk_bus": "virtio", "hw_video_model": "virtio", "hw_architecture": "x86_64"}
    body = spec(image={"id": "i", "properties": props})
    assert prepare(cloud, body).resources.root_required == {
        "COMPUTE_STORAGE_BUS_VIRTIO",
        "COMPUTE_GRAPHICS_MODEL_VIRTIO",
        "HW_ARCH_X86_64",
    }
    body = spec(image={"id": "i", "properties": {**props, "hw_disk_bus": "floppy-ish"}})
    assert prepare(cloud, body).resources.root_required == set()


def test_placement_failure_is_explained_per_resource_class() -> None:
    cloud = Cloud()
    cloud.host("a")
    prepared = prepare(cloud, spec(availability_zone=None))
    error = cloud.pipeline().placement_failed(
        prepared,
        "No valid host was found: placement has no provider with 64 free VCPU.",
        before=10000,
        resources={"VCPU": {"before": 10000, "after": 0}},
    )
    explanation = error.extra["explanation"]
    assert explanation["emptied_by"] == {"stage": "placement", "kind": "placement"}
    assert explanation["stages"][-1]["before"] == 10000
    assert explanation["stages"][-1]["detail"]["resources"]["VCPU"]["after"] == 0
    assert error.code == "allotment.no_valid_host"
