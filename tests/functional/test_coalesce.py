"""Coalesced ``select_destinations`` ([scheduler] coalesce) with the embedded placement:
concurrent calls (threads) decided in one batch get answers that do not overlap, honour
a server group across the batch, fail alone when they cannot place every instance, fall
back to their own claims on a conflict, and share identical candidate queries.

A batch is formed for real: the first call holds the process busy (its candidate query
waits at the placement port until the others have queued behind it), then the queued
calls are decided together. Calls and claims are counted by a thin wrapper around the
real in-process placement client; every answer comes from placement itself.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from allotment import errors
from allotment.app import Services, build_services, create_app
from allotment.context import RequestContext
from allotment.scheduler.cycle.driver import Cycle
from allotment.scheduler.decision import Selection
from allotment.scheduler.manager import SchedulerManager
from allotment.scheduler.placement import Claim, Offer, PlacementClient
from allotment.scheduler.request import parse_request_spec
from allotment.scheduler.resource_request import ResourceRequest
from tests.conftest import make_settings
from tests.fleet import Fleet, flavor, request_spec

CTX = RequestContext.internal()
# Cannot be placed anywhere: the first call, which holds the batch back, takes nothing.
BLOCKER = request_spec(flavor=flavor(vcpus=4096))


class CountingPlacement:
    """The real in-process client, counting candidate queries and claim calls; the first
    candidate query waits for ``release`` when ``hold`` is set."""

    def __init__(self, real: PlacementClient) -> None:
        self.real = real
        self.where = real.where
        self.sees_own_claims = real.sees_own_claims
        self.queries: list[Any] = []
        self.claims: list[list[str]] = []
        self.hold = False
        self.holding = threading.Event()
        self.release = threading.Event()
        self.before_claim: Callable[[Sequence[Claim]], None] | None = None

    def allocation_candidates(self, ctx: RequestContext, request: ResourceRequest) -> Offer:
        self.queries.append(request.canonical())
        if self.hold:
            self.hold = False
            self.holding.set()
            assert self.release.wait(30)
        return self.real.allocation_candidates(ctx, request)

    def claim(self, ctx: RequestContext, claims: Sequence[Claim]) -> None:
        self.claims.append([c.consumer for c in claims])
        if self.before_claim is not None:
            self.before_claim(claims)
        self.real.claim(ctx, claims)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class Cloud:
    def __init__(self, services: Services, client: TestClient) -> None:
        self.services = services
        self.fleet = Fleet(client)
        manager = services.scheduler
        assert manager is not None
        self.manager: SchedulerManager = manager
        self.placement = CountingPlacement(manager.placement)
        manager.placement = self.placement

    def batch(
        self, *calls: tuple[dict[str, Any], int | list[str]]
    ) -> list[list[list[Selection]] | Exception]:
        """Run ``calls`` (spec, instances or their uuids) concurrently, queued in this order
        behind a call that holds the process busy, so they are decided as one batch."""
        coalescer = self.manager.coalescer
        assert coalescer is not None
        results: list[list[list[Selection]] | Exception] = [RuntimeError("not run")] * len(calls)
        self.uuids = [
            [str(uuid.uuid4()) for _ in range(n)] if isinstance(n, int) else n for _, n in calls
        ]

        def run(index: int, spec: dict[str, Any], uuids: list[str]) -> None:
            try:
                found: list[list[Selection]] | Exception = self.manager.select_destinations(
                    CTX, parse_request_spec(spec), uuids, return_alternates=True
                )
            except Exception as exc:
                found = exc
            if index >= 0:
                results[index] = found

        self.placement.hold = True
        self.placement.holding.clear()
        self.placement.release.clear()
        blocker = threading.Thread(target=run, args=(-1, BLOCKER, [str(uuid.uuid4())]))
        blocker.start()
        assert self.placement.holding.wait(30)
        threads = []
        for index, ((spec, _), uuids) in enumerate(zip(calls, self.uuids, strict=True)):
            thread = threading.Thread(target=run, args=(index, spec, uuids))
            thread.start()
            threads.append(thread)
            _until(lambda n=index + 1: coalescer.waiting() == n)
        self.placement.release.set()
        for thread in [blocker, *threads]:
            thread.join(60)
        return results


def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.001)


@pytest.fixture
def make_cloud(tmp_path: Path) -> Iterator[Callable[..., Cloud]]:
    opened: list[tuple[TestClient, Services]] = []

    def make(**sections: dict[str, Any]) -> Cloud:
        services = build_services(make_settings(tmp_path / str(len(opened)), **sections))
        client = TestClient(create_app(services))
        client.__enter__()
        opened.append((client, services))
        return Cloud(services, client)

    yield make
    for client, services in opened:
        client.__exit__(None, None, None)
        services.db.dispose()


@pytest.fixture
def cloud(make_cloud: Callable[..., Cloud]) -> Cloud:
    return make_cloud()


def _hosts(result: list[list[Selection]] | Exception) -> list[str]:
    assert not isinstance(result, Exception), result
    return [chosen[0].host for chosen in result]


def test_a_batch_asks_an_identical_query_once_and_claims_once_without_overlap(
    cloud: Cloud,
) -> None:
    for name in ("a", "b", "c", "d"):
        cloud.fleet.host(name, vcpus=2)  # room for two 1-vCPU instances each
    cloud.placement.queries.clear()
    results = cloud.batch(*[(request_spec(), 1)] * 8)
    placed = Counter(h for r in results for h in _hosts(r))
    assert placed == {"a": 2, "b": 2, "c": 2, "d": 2}
    # The blocker's query, then the batch's one; the blocker claimed nothing, the batch
    # claimed its eight instances in one call.
    assert len(cloud.placement.queries) == 2
    assert [len(c) for c in cloud.placement.claims] == [8]
    for name in ("a", "b", "c", "d"):
        assert cloud.fleet.usages(name)["VCPU"] == 2
    assert cloud.placement.claims[0] == [u for uuids in cloud.uuids for u in uuids]
    for result, (instance,) in zip(results, cloud.uuids, strict=True):
        assert not isinstance(result, Exception)
        (chosen, *alternates) = result[0]
        assert list(cloud.fleet.allocations(instance)) == [chosen.compute_node_uuid]
        # Alternates are hosts with room left after the whole batch: none here.
        assert alternates == []


def test_each_request_in_a_batch_sees_the_hosts_the_earlier_ones_took(cloud: Cloud) -> None:
    """The RAM weigher spreads: alone after each other, four calls go to four hosts; in
    one batch too (each call's cycle has consumed the earlier calls' instances)."""
    for name in ("a", "b", "c", "d"):
        cloud.fleet.host(name, vcpus=8, ram=16384)
    results = cloud.batch(*[(request_spec(flavor=flavor(memory_mb=4096)), 1)] * 4)
    assert sorted(h for r in results for h in _hosts(r)) == ["a", "b", "c", "d"]


def test_anti_affinity_holds_across_a_batch(cloud: Cloud) -> None:
    for name in ("a", "b", "c"):
        cloud.fleet.host(name)
    group = {"uuid": str(uuid.uuid4()), "policy": "anti-affinity"}
    spec = request_spec(instance_group=group)
    results = cloud.batch(*[(spec, 1)] * 4)
    placed = [h for r in results[:3] for h in _hosts(r)]
    assert sorted(placed) == ["a", "b", "c"]
    assert isinstance(results[3], errors.NoValidHost)
    # Its own explanation, as alone: the one instance it asked for, not the batch's fourth.
    assert "for instance" not in results[3].message
    assert results[3].extra["explanation"]["instance"] == 1  # numbered from 1, as the summary does
    affinity = request_spec(instance_group={"uuid": str(uuid.uuid4()), "policy": "affinity"})
    results = cloud.batch(*[(affinity, 1)] * 3)
    assert len({h for r in results for h in _hosts(r)}) == 1


def test_a_request_that_cannot_place_all_its_instances_fails_alone(cloud: Cloud) -> None:
    """The middle call wants three instances and finds room for one only: it gets its own
    NoValidHost, and the call after it uses the host its first instance was offered."""
    cloud.fleet.host("a", vcpus=1, ram=65536)
    cloud.fleet.host("b", vcpus=1, ram=32768)
    results = cloud.batch((request_spec(), 1), (request_spec(), 3), (request_spec(), 1))
    assert _hosts(results[0]) == ["a"]
    failed = results[1]
    assert isinstance(failed, errors.NoValidHost)
    assert "for instance 2" in failed.message
    assert _hosts(results[2]) == ["b"]
    assert cloud.fleet.usages("a")["VCPU"] == cloud.fleet.usages("b")["VCPU"] == 1
    assert [len(c) for c in cloud.placement.claims] == [2]


def test_different_queries_in_a_batch_are_each_asked_once(cloud: Cloud) -> None:
    cloud.fleet.host("small", vcpus=4, ram=4096)
    cloud.fleet.host("big", vcpus=32, ram=65536)
    cloud.placement.queries.clear()
    large = request_spec(flavor=flavor(vcpus=8))
    results = cloud.batch((request_spec(), 1), (large, 1), (request_spec(), 1), (large, 1))
    assert [h for r in results for h in _hosts(r)] == ["big"] * 4
    assert len(cloud.placement.queries) == 3  # the blocker's, then one per distinct query
    assert cloud.fleet.usages("big")["VCPU"] == 18


def test_a_conflicting_batch_falls_back_to_per_request_claims(cloud: Cloud) -> None:
    """Another writer takes the last room on one host between the batch's query and its
    claim: the batch writes nothing, each call claims on its own and still gets a host."""
    for name in ("a", "b", "c"):
        cloud.fleet.host(name, vcpus=2)
    thief = str(uuid.uuid4())

    def steal(claims: Sequence[Claim]) -> None:
        if len(claims) > 1 and cloud.placement.before_claim is not None:
            cloud.placement.before_claim = None
            rp = cloud.fleet.hosts["a"].uuid
            body = {
                "allocations": {rp: {"resources": {"VCPU": 2}}},
                "project_id": "x",
                "user_id": "x",
                "consumer_generation": None,
                "consumer_type": "INSTANCE",
            }
            cloud.fleet.call("PUT", f"/allocations/{thief}", body, expect=204)

    cloud.placement.before_claim = steal
    results = cloud.batch(*[(request_spec(), 1)] * 4)
    placed = Counter(h for r in results for h in _hosts(r))
    assert placed == {"b": 2, "c": 2}
    assert cloud.fleet.usages("a")["VCPU"] == 2  # the thief's
    assert list(cloud.fleet.allocations(thief)) == [cloud.fleet.hosts["a"].uuid]
    # One batch claim (refused), then each call's own.
    assert [len(c) for c in cloud.placement.claims] == [4, 1, 1, 1, 1]


def test_an_instance_already_claimed_is_moving_and_the_batch_goes_on(cloud: Cloud) -> None:
    """A call for an instance that holds allocations is a move (Nova's claim doubles
    up): the batch claim is refused, each call runs on its own, both are placed."""
    cloud.fleet.host("a")
    taken = str(uuid.uuid4())
    cloud.manager.select_destinations(CTX, parse_request_spec(request_spec()), [taken])
    fresh = str(uuid.uuid4())
    results = cloud.batch((request_spec(), [fresh]), (request_spec(), [taken]))
    assert _hosts(results[0]) == ["a"] and _hosts(results[1]) == ["a"]
    assert list(cloud.fleet.allocations(fresh)) == [cloud.fleet.hosts["a"].uuid]
    # On the provider it already uses, a moving instance keeps what it holds.
    assert list(cloud.fleet.allocations(taken)) == [cloud.fleet.hosts["a"].uuid]
    assert cloud.fleet.usages("a")["VCPU"] == 2


def test_without_coalescing_every_call_asks_placement(make_cloud: Callable[..., Cloud]) -> None:
    cloud = make_cloud(scheduler={"coalesce": False})
    assert cloud.manager.coalescer is None
    cloud.fleet.host("a", vcpus=8)
    cloud.placement.queries.clear()
    spec = parse_request_spec(request_spec())
    threads = [
        threading.Thread(
            target=cloud.manager.select_destinations, args=(CTX, spec, [str(uuid.uuid4())])
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(cloud.placement.queries) == 4
    assert [len(c) for c in cloud.placement.claims] == [1, 1, 1, 1]
    assert cloud.fleet.usages("a")["VCPU"] == 4


def test_max_batch_bounds_a_batch(make_cloud: Callable[..., Cloud]) -> None:
    cloud = make_cloud(scheduler={"max_batch": 2})
    cloud.fleet.host("a", vcpus=8)
    results = cloud.batch(*[(request_spec(), 1)] * 5)
    assert all(not isinstance(r, Exception) for r in results)
    assert [len(c) for c in cloud.placement.claims] == [2, 2, 1]
    assert cloud.fleet.usages("a")["VCPU"] == 5


def test_identical_one_instance_calls_share_one_cycle(cloud: Cloud) -> None:
    """As Nova sends them (each spec naming its own instance), consecutive calls with
    otherwise equal specs are decided as the instances of one request: one cycle."""
    for name in ("a", "b", "c", "d"):
        cloud.fleet.host(name)
    pipeline = cloud.manager.pipeline
    start = pipeline.start
    cycles: list[int] = []

    def counting_start(*args: Any, **kwargs: Any) -> Any:
        cycles.append(len(args[3]))  # the instances the cycle is for
        return start(*args, **kwargs)

    pipeline.start = counting_start  # type: ignore[method-assign]
    specs = [request_spec(instance_uuid=str(uuid.uuid4())) for _ in range(4)]
    other = request_spec(flavor=flavor(vcpus=2))
    results = cloud.batch(*[(spec, 1) for spec in specs], (other, 1))
    assert sorted(h for r in results[:4] for h in _hosts(r)) == ["a", "b", "c", "d"]
    assert not isinstance(results[4], Exception)
    assert cycles == [4, 1]  # (the blocker got no candidates) the four together, the other


def test_a_cohort_ranks_its_alternates_once_each_call_leaving_out_its_own_host(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls decided as one request's instances share its cycle: the alternates are the
    best hosts as the last pick left it, ranked once, each call leaving out only its own
    host (another call's host, still with room, is a good alternate)."""
    for name, ram in (("a", 20480), ("b", 19456), ("c", 18432), ("d", 17408)):
        cloud.fleet.host(name, ram=ram)
    ranked: list[int] = []
    alternates = Cycle.alternates

    def counting(
        cycle: Cycle, selected: Sequence[int], count: int, beside: int | None = None
    ) -> Any:
        ranked.append(count)
        return alternates(cycle, selected, count, beside)

    monkeypatch.setattr(Cycle, "alternates", counting)
    spec = request_spec(flavor=flavor(memory_mb=4096))
    results = cloud.batch(*[(spec, 1)] * 3)
    assert [_hosts(r) for r in results] == [["a"], ["b"], ["c"]]
    # Left after the batch: d 17408 MB, a 16384, b 15360, c 14336 (max_attempts 3).
    answers = []
    for result in results:
        assert not isinstance(result, Exception)
        ((_, *others),) = result
        answers.append([o.host for o in others])
    assert answers == [["d", "b"], ["d", "a"], ["d", "a"]]
    assert ranked == [3]  # two alternates, and one host past the one each leaves out
