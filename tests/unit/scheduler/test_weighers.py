"""Weighers and Nova's weight handler: clamping, min/max normalization, multipliers
(including per-aggregate overrides), and keeping weights right as a batch is placed."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allotment.errors import NoValidHost
from tests.unit.scheduler.helpers import Cloud, spec


def nova_weights(
    raws: list[list[float]], mults: list[float], minvals: list[float | None]
) -> list[float]:
    """Nova's BaseWeightHandler.get_weighed_objects, written out naively."""
    count = len(raws[0]) if raws else 0
    totals = [0.0] * count
    if count <= 1:
        return totals
    for raw, mult, minval in zip(raws, mults, minvals, strict=True):
        values = [max(v, minval) if minval is not None else v for v in raw]
        low = minval if minval is not None else min(values)
        high = max(values)
        for i, v in enumerate(values):
            totals[i] += 0.0 if high == low else mult * (v - low) / (high - low)
    return totals


def test_ram_weigher_spreads_by_default_and_stacks_when_negative() -> None:
    cloud = Cloud()
    cloud.host("small", ram=1024)
    cloud.host("big", ram=4096)
    cloud.host("mid", ram=2048)
    assert cloud.ranking(spec(), "RAMWeigher") == [("big", 1.0), ("mid", 0.5), ("small", 0.25)]
    cloud.sections["filter_scheduler"] = {"ram_weight_multiplier": -2.0}
    assert cloud.ranking(spec(), "RAMWeigher")[0] == ("small", -0.5)


def test_minval_zero_clamps_negative_free_ram() -> None:
    cloud = Cloud()
    cloud.host("over", ram=-512)
    cloud.host("ok", ram=512)
    assert cloud.ranking(spec(), "RAMWeigher") == [("ok", 1.0), ("over", 0.0)]


def test_cpu_and_disk_weighers() -> None:
    cloud = Cloud()
    cloud.host("cpu", vcpus=32, disk=10)
    cloud.host("disk", vcpus=8, disk=40)
    assert cloud.ranking(spec(), "CPUWeigher") == [("cpu", 1.0), ("disk", 0.25)]
    assert cloud.ranking(spec(), "DiskWeigher") == [("disk", 1.0), ("cpu", 0.25)]


def test_io_ops_weigher_prefers_idle_hosts() -> None:
    cloud = Cloud()
    cloud.host("busy", io_ops=4)
    cloud.host("idle", io_ops=0)
    assert cloud.ranking(spec(), "IoOpsWeigher") == [("idle", 0.0), ("busy", -1.0)]


def test_num_instances_weigher_is_off_by_default() -> None:
    cloud = Cloud()
    cloud.host("a")
    cloud.host("b")
    cloud.instance("a")
    assert cloud.ranking(spec(), "NumInstancesWeigher") == [("a", 0.0), ("b", 0.0)]
    cloud.sections["filter_scheduler"] = {"num_instances_weight_multiplier": -1.0}
    assert cloud.ranking(spec(), "NumInstancesWeigher") == [("b", 0.0), ("a", -1.0)]


def test_build_failure_weigher_negates_its_multiplier() -> None:
    cloud = Cloud(filter_scheduler={"build_failure_weight_multiplier": 10.0})
    cloud.host("flaky", failed_builds=3)
    cloud.host("solid", failed_builds=0)
    assert cloud.ranking(spec(), "BuildFailureWeigher") == [("solid", 0.0), ("flaky", -10.0)]


def test_hypervisor_version_weigher_prefers_newer() -> None:
    cloud = Cloud()
    cloud.host("old", hypervisor_version=6000000)
    cloud.host("new", hypervisor_version=8000000)
    cloud.host("unknown")
    assert [h for h, _ in cloud.ranking(spec(), "HypervisorVersionWeigher")] == [
        "new",
        "old",
        "unknown",
    ]


def test_pci_weigher_keeps_device_hosts_free() -> None:
    cloud = Cloud()
    cloud.host("gpu", pci_pools=[{"vendor_id": "10de", "product_id": "1", "count": 8}])
    cloud.host("plain")
    assert [h for h, _ in cloud.ranking(spec(), "PCIWeigher")] == ["plain", "gpu"]


class TestMetricsWeigher:
    def cloud(self, **metrics: object) -> Cloud:
        cloud = Cloud(metrics={"weight_setting": ["cpu=-1.0", "mem=0.5"], **metrics})
        cloud.host("loaded", metrics=[{"name": "cpu", "value": 80}, {"name": "mem", "value": 100}])
        cloud.host("quiet", metrics=[{"name": "cpu", "value": 10}, {"name": "mem", "value": 20}])
        cloud.host("blind")
        return cloud

    def test_missing_metric_weighs_unavailable(self) -> None:
        cloud = self.cloud(required=False, weight_of_unavailable=-1000.0)
        ranked = cloud.ranking(spec(), "MetricsWeigher")
        # raw: loaded -30, quiet 0, blind -1000 -> normalized over [-1000, 0].
        assert [h for h, _ in ranked] == ["quiet", "loaded", "blind"]
        assert ranked[1][1] == pytest.approx(0.97)

    def test_missing_metric_fails_when_required(self) -> None:
        with pytest.raises(NoValidHost, match="does not report metric 'cpu'"):
            self.cloud(required=True).ranking(spec(), "MetricsWeigher")


def test_soft_affinity_weighers_count_group_members() -> None:
    cloud = Cloud()
    cloud.host("two")
    cloud.host("one")
    cloud.host("none")
    members = [cloud.instance("two"), cloud.instance("two"), cloud.instance("one")]
    soft = spec(instance_group={"policy": "soft-affinity", "members": members})
    assert [h for h, _ in cloud.ranking(soft, "ServerGroupSoftAffinityWeigher")] == [
        "two",
        "one",
        "none",
    ]
    anti = spec(instance_group={"policy": "soft-anti-affinity", "members": members})
    assert [h for h, _ in cloud.ranking(anti, "ServerGroupSoftAntiAffinityWeigher")] == [
        "none",
        "one",
        "two",
    ]
    # Not the group's policy: every host weighs the same.
    assert {w for _, w in cloud.ranking(anti, "ServerGroupSoftAffinityWeigher")} == {0.0}


def test_soft_anti_affinity_spreads_a_batch() -> None:
    cloud = Cloud()
    for name in ("a", "b", "c"):
        cloud.host(name)
    body = spec(instance_group={"policy": "soft-anti-affinity"})
    chosen = cloud.place(body, 6, filters=[], weighers=["ServerGroupSoftAntiAffinityWeigher"])
    assert sorted(chosen) == ["a", "a", "b", "b", "c", "c"]


def test_image_properties_weigher() -> None:
    cloud = Cloud(filter_scheduler={"image_props_weight_multiplier": 1.0})
    cloud.host("windows")
    cloud.host("linux")
    cloud.instance("windows", image_properties={"os_type": "windows"})
    cloud.instance("windows", image_properties={"os_type": "windows"})
    cloud.instance("linux", image_properties={"os_type": "linux"})
    body = spec(image={"id": "i", "properties": {"os_type": "windows"}})
    assert cloud.ranking(body, "ImagePropertiesWeigher") == [("windows", 1.0), ("linux", 0.0)]


def test_aggregate_metadata_overrides_multiplier_per_host() -> None:
    cloud = Cloud()
    cloud.host("stack", ram=4096)
    cloud.host("spread", ram=1024)
    cloud.aggregate("a", ["stack"], ram_weight_multiplier="-1.0")
    cloud.aggregate("b", ["stack"], ram_weight_multiplier="0.5")
    # Nova takes the smallest value: stack weighs -1.0 * 1.0, spread 1.0 * 0.25.
    assert cloud.ranking(spec(), "RAMWeigher") == [("spread", 0.25), ("stack", -1.0)]


def test_weighers_add_up() -> None:
    cloud = Cloud()
    cloud.host("a", ram=4096, vcpus=4)
    cloud.host("b", ram=2048, vcpus=16)
    ranked = dict(cloud.ranking(spec(), "RAMWeigher", "CPUWeigher"))
    assert ranked == {"a": pytest.approx(1.25), "b": pytest.approx(1.5)}


def test_host_subset_size_picks_among_the_best() -> None:
    cloud = Cloud(filter_scheduler={"host_subset_size": 2})
    cloud.host("best", ram=4096)
    cloud.host("second", ram=4000)
    cloud.host("worst", ram=10)
    firsts = {cloud.ranking(spec(), "RAMWeigher", seed=seed)[0][0] for seed in range(30)}
    assert firsts == {"best", "second"}


def test_shuffle_best_same_weighed_hosts() -> None:
    cloud = Cloud(filter_scheduler={"shuffle_best_same_weighed_hosts": True})
    for name in ("a", "b", "c"):
        cloud.host(name, ram=4096)
    cloud.host("d", ram=10)
    firsts = {cloud.ranking(spec(), "RAMWeigher", seed=seed)[0][0] for seed in range(30)}
    assert firsts == {"a", "b", "c"}
    cloud.sections["filter_scheduler"] = {}
    firsts = {cloud.ranking(spec(), "RAMWeigher", seed=seed)[0][0] for seed in range(30)}
    assert firsts == {"a"}


@settings(max_examples=60, deadline=None)
@given(
    hosts=st.lists(
        st.tuples(
            st.integers(-2048, 65536), st.integers(0, 64), st.integers(0, 10), st.integers(0, 5)
        ),
        min_size=1,
        max_size=12,
    ),
    mults=st.tuples(
        st.sampled_from([1.0, -1.0, 2.5, 0.0]),
        st.sampled_from([1.0, -0.5]),
        st.sampled_from([-1.0, 1.0, 0.0]),
    ),
    batch=st.integers(1, 6),
    flavor_ram=st.integers(0, 4096),
)
def test_batch_weights_match_a_naive_nova(
    hosts: list[tuple[int, int, int, int]],
    mults: tuple[float, float, float],
    batch: int,
    flavor_ram: int,
) -> None:
    """After every placement in a batch, the weights equal Nova's handler recomputed from
    scratch over the consumed host states."""
    cloud = Cloud(
        filter_scheduler={
            "ram_weight_multiplier": mults[0],
            "cpu_weight_multiplier": mults[1],
            "io_ops_weight_multiplier": mults[2],
        }
    )
    state = []
    for i, (ram, vcpus, io_ops, failed) in enumerate(hosts):
        cloud.host(f"h{i}", ram=ram, vcpus=vcpus, io_ops=io_ops, failed_builds=failed)
        state.append([float(ram), float(vcpus), float(io_ops)])
    body = spec(flavor={"memory_mb": flavor_ram, "vcpus": 1})
    weighers = ["RAMWeigher", "CPUWeigher", "IoOpsWeigher"]
    cycle = cloud.cycle(
        body, filters=[], weighers=weighers, instances=[], seed=random.randrange(99)
    )
    for _ in range(batch):
        ranking = cycle.next_hosts()
        got = {c.position: c.weight for c in ranking}
        raws = [[s[k] for s in state] for k in range(3)]
        expected = nova_weights(raws, list(mults), [0, 0, 0])
        assert got == {i: pytest.approx(w, abs=1e-9) for i, w in enumerate(expected)}
        best = max(expected)
        chosen = ranking.first.position
        assert expected[chosen] == pytest.approx(best, abs=1e-9)
        cycle.consume(chosen)
        state[chosen][0] -= flavor_ram
        state[chosen][1] -= 1
        state[chosen][2] += 1


@settings(max_examples=40, deadline=None)
@given(
    hosts=st.lists(
        st.tuples(st.integers(0, 65536), st.integers(0, 64), st.integers(6000000, 6000004)),
        min_size=2,
        max_size=10,
    ),
    batch=st.integers(1, 5),
)
def test_weights_stay_right_as_hosts_drop_out(
    hosts: list[tuple[int, int, int]], batch: int
) -> None:
    """With anti-affinity every chosen host leaves the candidates; the weights of the rest
    are Nova's handler over the hosts still in the running."""
    cloud = Cloud()
    state = {}
    for i, (ram, vcpus, version) in enumerate(hosts):
        cloud.host(f"h{i}", ram=ram, vcpus=vcpus, hypervisor_version=version)
        state[i] = [float(ram), float(vcpus), float(version)]
    body = spec(instance_group={"policy": "anti-affinity"}, flavor={"memory_mb": 0})
    weighers = ["RAMWeigher", "CPUWeigher", "HypervisorVersionWeigher"]
    uuids = [f"00000000-0000-0000-0000-{n:012}" for n in range(batch)]
    cycle = cloud.cycle(
        body, filters=["ServerGroupAntiAffinityFilter"], weighers=weighers, instances=uuids
    )
    for uuid in uuids:
        if not state:
            with pytest.raises(NoValidHost):
                cycle.next_hosts(uuid)
            return
        ranking = cycle.next_hosts(uuid)
        got = {c.position: c.weight for c in ranking}
        alive = sorted(state)
        raws = [[state[p][k] for p in alive] for k in range(3)]
        expected = nova_weights(raws, [1.0, 1.0, 1.0], [0, 0, None])
        assert got == {p: pytest.approx(w, abs=1e-9) for p, w in zip(alive, expected, strict=True)}
        chosen = ranking.first.position
        cycle.consume(chosen, uuid)
        del state[chosen]
