"""Request filters against Nova's semantics (and our one deliberate difference)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from allotment.config import load_settings
from allotment.context import RequestContext
from allotment.errors import ConfigError, NeutronUnavailable, NoValidHost
from allotment.scheduler.cycle.driver import PreparedRequest
from allotment.scheduler.nova.conf import read_nova_conf
from allotment.scheduler.nova.neutron import NeutronClient
from allotment.scheduler.pipeline import Pipeline
from allotment.scheduler.request import parse_request_spec
from allotment.scheduler.request_filters import RoutedNetworksFilter
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


class TestOwnerNova:
    """Nova 34's owner_nova_filter: OWNER_NOVA is required once the lowest nova-compute
    service version across the cells (get_minimum_version_all_cells) reaches 73."""

    CELL1 = "11111111-1111-4111-8111-111111111111"
    CELL2 = "22222222-2222-4222-8222-222222222222"

    def required(self, cloud: Cloud, body: dict[str, Any] | None = None) -> bool:
        prepared = prepare(cloud, body or spec())
        return "OWNER_NOVA" in prepared.resources.root_required

    def test_required_once_every_compute_is_at_73(self) -> None:
        cloud = Cloud()
        cloud.host("a", cell_uuid=self.CELL1, service_version=73)
        cloud.host("b", cell_uuid=self.CELL2, service_version=74)
        prepared = prepare(cloud, spec())
        assert "OWNER_NOVA" in prepared.resources.root_required
        (stage,) = [s for s in prepared.funnel.stages if s.name == "owner_nova_filter"]
        assert stage.detail["min_compute_version"] == 73

    def test_one_older_compute_in_any_cell_keeps_it_off(self) -> None:
        cloud = Cloud()
        cloud.host("a", cell_uuid=self.CELL1, service_version=74)
        cloud.host("b", cell_uuid=self.CELL2, service_version=74)
        cloud.host("c", cell_uuid=self.CELL2, service_version=72)
        assert not self.required(cloud)

    def test_forced_down_computes_do_not_count(self) -> None:
        cloud = Cloud()
        cloud.host("a", cell_uuid=self.CELL1, service_version=74)
        cloud.host("b", cell_uuid=self.CELL1, service_version=72, forced_down=True)
        assert self.required(cloud)

    def test_a_cell_whose_minimum_is_zero_is_left_out(self) -> None:
        # Nova drops a cell's minimum of 0 (a service that never reported a version).
        cloud = Cloud()
        cloud.host("a", cell_uuid=self.CELL1, service_version=74)
        cloud.host("b", cell_uuid=self.CELL2, service_version=0)
        cloud.host("c", cell_uuid=self.CELL2, service_version=50)
        assert self.required(cloud)

    def test_hosts_reported_over_http_are_not_computes(self) -> None:
        cloud = Cloud()
        cloud.host("a")
        assert not self.required(cloud)  # no nova-compute at all: Nova's minimum is 0
        cloud.host("b", cell_uuid=self.CELL1, service_version=73)
        assert self.required(cloud)

    def test_pci_groups_of_nova_s_pci_requests_require_it_too(self) -> None:
        cloud = Cloud()
        cloud.host("a", cell_uuid=self.CELL1, service_version=74)
        alias_request, port_request = "5f1c6d0e-0d3a-4a57-9d2b-3f1f3f6b9a01", "port-req"
        body = spec(
            pci_requests=[
                {"count": 1, "alias_name": "gpu", "request_id": alias_request},
                {"count": 1, "request_id": port_request, "requester_id": "port-1"},
            ],
            requested_resources=[
                {"requester_id": f"{alias_request}-0", "resources": {"CUSTOM_GPU": 1}},
                {"requester_id": "port-1", "resources": {"NET_BW_EGR_KILOBIT_PER_SEC": 10}},
            ],
        )
        groups = prepare(cloud, body).resources.groups
        assert frozenset({"OWNER_NOVA"}) in groups[f"{alias_request}-0"].required_traits
        assert frozenset({"OWNER_NOVA"}) not in groups["port-1"].required_traits
        assert frozenset({"OWNER_NOVA"}) not in groups[""].required_traits

    def test_already_required_is_left_as_it_is(self) -> None:
        cloud = Cloud()
        cloud.host("a", cell_uuid=self.CELL1, service_version=60)
        body = spec(request_level_params={"root_required": ["OWNER_NOVA"]})
        prepared = prepare(cloud, body)
        assert "OWNER_NOVA" in prepared.resources.root_required
        assert all(s.name != "owner_nova_filter" for s in prepared.funnel.stages)


class TestRoutedNetworksOptions:
    """The routed-networks filter's set-up (its Neutron calls are tested end to end in
    tests/integration/nova/test_routed_networks.py)."""

    def pipeline(self, tmp_path: Path, nova_conf: str | None, **scheduler: Any) -> Pipeline:
        sections: dict[str, Any] = {"scheduler": scheduler}
        if nova_conf is not None:
            path = tmp_path / "nova.conf"
            path.write_text(nova_conf)
            sections["nova"] = {"config_file": str(path)}
        return Pipeline.from_settings(load_settings(None, sections, environ={}))

    def routed(self, pipeline: Pipeline) -> RoutedNetworksFilter:
        (found,) = [f for f in pipeline.request_filters if isinstance(f, RoutedNetworksFilter)]
        return found

    def test_off_without_nova_conf_and_refused_when_asked_for(self, tmp_path: Path) -> None:
        assert self.routed(self.pipeline(tmp_path, None)).neutron is None
        with pytest.raises(ConfigError, match=r"needs \[nova\] config_file"):
            self.pipeline(tmp_path, None, query_placement_for_routed_network_aggregates=True)

    def test_unset_takes_nova_conf_s_own_value(self, tmp_path: Path) -> None:
        off = "[scheduler]\nquery_placement_for_routed_network_aggregates = false\n"
        assert self.routed(self.pipeline(tmp_path, off)).neutron is None
        on = "[scheduler]\nquery_placement_for_routed_network_aggregates = true\n"
        # On, the filter needs the scheduler's placement, which this pipeline lacks.
        with pytest.raises(ConfigError, match="needs the scheduler's placement"):
            self.pipeline(tmp_path, on)
        # allotment's own setting wins over nova.conf's.
        explicit = self.pipeline(tmp_path, on, query_placement_for_routed_network_aggregates=False)
        assert self.routed(explicit).neutron is None

    def test_neutron_needs_credentials_in_nova_conf(self) -> None:
        with pytest.raises(ConfigError, match=r"\[neutron\] has no auth_type"):
            NeutronClient(conf_of("[neutron]\n"))

    def test_neutron_down_is_unavailable_naming_it(self) -> None:
        conf = conf_of(
            "[neutron]\nauth_type = admin_token\ntoken = t\nendpoint = http://127.0.0.1:9\n"
            "http_retries = 0\n"
        )
        with pytest.raises(NeutronUnavailable, match="Neutron cannot be reached"):
            NeutronClient(conf).segment_ids_for_network(RequestContext.internal(), "net")


def conf_of(text: str) -> Any:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "nova.conf"
        path.write_text(text)
        return read_nova_conf(path)
