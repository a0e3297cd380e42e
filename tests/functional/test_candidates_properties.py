"""The candidate engine against a brute-force reference, on random provider forests.

Hypothesis draws forests (nesting, identical siblings, sharing providers, traits,
aggregates, partial usage) and requests (unsuffixed and granular groups, identical groups,
traits any-of and forbidden, member_of, in_tree, group_policy, same_subtree, root_required,
microversions before and after 1.29, limits). The engine's answer must be exactly the
reference's (with ``allocation_candidate_permutations = "all"``), or the same except that
candidates differing only by swapping interchangeable providers between identical groups
appear once (the default); with a limit, it must be that many distinct ones.
"""

from __future__ import annotations

import uuid as uuidlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from allotment.app import Services, build_services
from allotment.placement.candidates import engine
from allotment.placement.model import CandidateRequest, RequestGroup
from tests.conftest import make_settings
from tests.reference_candidates import SHARING, Candidate, Reference, canonical
from tests.world import Inv, Prov, World

CLASSES = ["VCPU", "MEMORY_MB", "DISK_GB", "SRIOV_NET_VF"]
TRAITS = ["CUSTOM_A", "CUSTOM_B", "CUSTOM_C"]
AGGREGATES = [str(uuidlib.UUID(int=i)) for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def shared_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    tmp: Path = tmp_path_factory.mktemp("props")
    built = build_services(make_settings(tmp, database={"sqlite_synchronous": "NORMAL"}))
    built.placement.catalog.traits.sync(TRAITS)
    yield built
    built.db.dispose()


def sometimes(
    strategy: st.SearchStrategy[object], usual: object, percent: int
) -> st.SearchStrategy[object]:
    """``strategy`` in ``percent`` % of draws, else ``usual``."""
    return st.integers(0, 99).flatmap(lambda n: strategy if n >= 100 - percent else st.just(usual))


inventories = st.builds(
    Inv,
    total=st.integers(2, 8),
    reserved=sometimes(st.integers(1, 2), 0, 20),
    min_unit=sometimes(st.just(2), 1, 15),
    max_unit=sometimes(st.integers(1, 6), 0, 25),
    step_size=sometimes(st.just(2), 1, 15),
    allocation_ratio=st.sampled_from([1.0, 1.0, 1.5, 2.0]),
)


@st.composite
def providers(draw: st.DrawFn, name: str, parent: str | None, classes: list[str]) -> Prov:
    p = Prov(name=name, parent=parent)
    for rc in classes:
        if draw(st.integers(0, 9)) < 7:
            inv = draw(inventories)
            p.inventory[rc] = inv
            if draw(st.booleans()):
                p.used[rc] = draw(st.integers(0, max(inv.capacity, 0)))
    p.traits = set(draw(st.sets(st.sampled_from(TRAITS), max_size=2)))
    p.aggregates = set(draw(st.sets(st.sampled_from(AGGREGATES), max_size=2)))
    return p


def _clone(p: Prov, name: str) -> Prov:
    return Prov(
        name=name,
        parent=p.parent,
        inventory=dict(p.inventory),
        used=dict(p.used),
        traits=set(p.traits),
        aggregates=set(p.aggregates),
    )


@st.composite
def worlds(draw: st.DrawFn) -> World:
    found: list[Prov] = []
    for r in range(draw(st.integers(1, 3))):
        root = draw(providers(f"r{r}", None, CLASSES))
        found.append(root)
        previous: Prov | None = None
        symmetric = draw(st.integers(0, 9)) >= 6
        for c in range(draw(st.integers(2 if symmetric else 0, 4 if symmetric else 3))):
            if previous is not None and (symmetric or draw(st.booleans())):
                child = _clone(previous, f"r{r}c{c}")
            else:
                child = draw(providers(f"r{r}c{c}", root.name, CLASSES))
            found.append(child)
            if previous is None or draw(st.booleans()):
                previous = child
            for g in range(draw(st.integers(0, 2)) if c == 0 and not symmetric else 0):
                found.append(draw(providers(f"r{r}c{c}g{g}", child.name, CLASSES)))
    for s in range(draw(st.integers(0, 2))):
        shared = draw(providers(f"s{s}", None, ["DISK_GB", "SRIOV_NET_VF"]))
        shared.traits.add(SHARING)
        shared.aggregates.add(draw(st.sampled_from(AGGREGATES)))
        found.append(shared)
    return World(found)


any_of_traits = st.frozensets(st.sampled_from([*TRAITS, SHARING]), min_size=1, max_size=2)
any_of_aggregates = st.frozensets(st.sampled_from(AGGREGATES), min_size=1, max_size=2)


@st.composite
def groups(draw: st.DrawFn, suffix: str, world: World, resourceless: bool) -> RequestGroup:
    if resourceless:
        resources: dict[str, int] = {}
    else:
        classes = draw(st.sets(st.sampled_from(CLASSES), min_size=1, max_size=2))
        resources = {rc: draw(sometimes(st.just(2), 1, 25)) for rc in sorted(classes)}
    required: tuple[frozenset[str], ...] = ()
    if draw(st.integers(0, 9)) >= 7 or (resourceless and draw(st.booleans())):
        required = tuple(draw(st.lists(any_of_traits, min_size=1, max_size=2)))
    forbidden: frozenset[str] = frozenset()
    if draw(st.integers(0, 9)) >= 8:
        forbidden = draw(st.frozensets(st.sampled_from(TRAITS), min_size=1, max_size=1))
    # Upstream refuses a required any-of set made only of forbidden traits.
    required = tuple(r for r in required if not r <= forbidden)
    in_tree = None
    if draw(st.integers(0, 9)) == 9:
        in_tree = draw(st.sampled_from([*(p.uuid for p in world.providers.values()), "x"]))
        if in_tree == "x":
            in_tree = str(uuidlib.uuid4())
    return RequestGroup(
        suffix=suffix,
        resources=resources,
        required_traits=required,
        forbidden_traits=forbidden,
        member_of=tuple(draw(st.lists(any_of_aggregates, max_size=1)))
        if draw(st.integers(0, 9)) >= 7
        else (),
        forbidden_aggregates=draw(st.frozensets(st.sampled_from(AGGREGATES), max_size=1))
        if draw(st.integers(0, 9)) >= 8
        else frozenset(),
        in_tree=in_tree,
    )


@st.composite
def requests(draw: st.DrawFn, world: World) -> CandidateRequest:
    found: list[RequestGroup] = []
    if draw(st.integers(0, 9)) < 7:
        found.append(draw(groups("", world, resourceless=False)))
    resourceless: list[str] = []
    for i in range(draw(st.integers(0 if found else 1, 3))):
        suffix = f"_G{i}"
        granular = [g for g in found if g.suffix]
        if granular and draw(st.booleans()):
            # An identical group under another name: the symmetric case.
            twin = draw(st.sampled_from(granular))
            group = RequestGroup(
                suffix=suffix,
                resources=twin.resources,
                required_traits=twin.required_traits,
                forbidden_traits=twin.forbidden_traits,
                member_of=twin.member_of,
                forbidden_aggregates=twin.forbidden_aggregates,
                in_tree=twin.in_tree,
            )
        else:
            bare = any(g.resources for g in found) and draw(st.integers(0, 4)) == 0
            group = draw(groups(suffix, world, resourceless=bare))
        if not group.resources:
            resourceless.append(suffix)
        found.append(group)
    suffixes = [g.suffix for g in found if g.suffix]
    same_subtrees = []
    if suffixes and draw(st.booleans()):
        same_subtrees.append(frozenset(draw(st.sets(st.sampled_from(suffixes), min_size=1))))
    if resourceless:
        same_subtrees.append(frozenset(resourceless) | {draw(st.sampled_from(suffixes))})
    root_traits: set[str] = set()
    if draw(st.integers(0, 9)) >= 8:
        root_traits = draw(st.sets(st.sampled_from([*TRAITS, SHARING]), max_size=2))
    root_forbidden = frozenset(t for t in root_traits if draw(st.booleans()))
    return CandidateRequest(
        groups=tuple(found),
        limit=draw(st.one_of(st.none(), st.integers(1, 4))),
        group_policy=draw(st.sampled_from(["none", "isolate"])),
        root_required=frozenset(root_traits) - root_forbidden,
        root_forbidden=root_forbidden,
        same_subtrees=tuple(same_subtrees),
        nested_aware=draw(st.integers(0, 3)) > 0,
    )


def _engine_candidates(
    services: Services, request: CandidateRequest
) -> tuple[list[Candidate], dict[str, dict[str, object]]]:
    found = services.placement.allocation_candidates(request)
    cands = [
        Candidate(
            frozenset((u, rc, a) for u, res in r.allocations.items() for rc, a in res.items()),
            frozenset((s, frozenset(us)) for s, us in r.mappings.items()),
        )
        for r in found.requests()
    ]
    summaries = {
        s.uuid: {
            "resources": dict(s.resources),
            "traits": set(s.traits),
            "parent": s.parent_uuid,
            "root": s.root_uuid,
        }
        for s in found.summaries()
    }
    return cands, summaries


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_engine_matches_brute_force(shared_services: Services, data: st.DataObject) -> None:
    world = data.draw(worlds())
    request = data.draw(requests(world))
    distinct = data.draw(st.booleans())
    shared_services.placement.all_permutations = not distinct
    world.write(shared_services.db, shared_services.placement.catalog)
    shared_services.placement.index.rebuild()

    got, summaries = _engine_candidates(shared_services, request)
    reference = Reference(world, request)
    expected = reference.candidates()

    event("none" if not expected else "some" if len(expected) < 10 else "many")
    event(f"groups={len(request.groups)}")
    event(f"collapsed={len(expected) > len({canonical(world, request, c) for c in expected})}")
    assert len(set(got)) == len(got), "duplicate candidates"
    assert set(got) <= expected, "candidates the reference does not have"
    if distinct:
        classes = {canonical(world, request, c) for c in got}
        assert len(classes) == len(got), "two candidates that differ only by a symmetric swap"
        expected_classes = {canonical(world, request, c) for c in expected}
        if request.limit is None:
            assert classes == expected_classes
        else:
            assert len(got) == min(request.limit, len(expected_classes))
    elif request.limit is None:
        assert set(got) == expected
    else:
        assert len(got) == min(request.limit, len(expected))
    returned = [c for c in expected if c in set(got)]
    assert summaries == reference.summaries(returned, expected)


def test_limit_spreads_candidates_over_trees(shared_services: Services) -> None:
    """Eight identical GPUs under each of three hosts, four identical granular groups: each
    host has C(8,4) = 70 distinct allocations (1680 with permutations); a limit of 6 gives
    two per host."""
    found = []
    for h in range(3):
        found.append(Prov(f"h{h}", inventory={"VCPU": Inv(8)}))
        found += [Prov(f"h{h}g{g}", parent=f"h{h}", inventory={"VGPU": Inv(1)}) for g in range(8)]
    world = World(found)
    world.write(shared_services.db, shared_services.placement.catalog)
    shared_services.placement.index.rebuild()
    shared_services.placement.all_permutations = False
    gpu = [RequestGroup(suffix=f"_{i}", resources={"VGPU": 1}) for i in range(4)]
    request = CandidateRequest(
        groups=(RequestGroup(resources={"VCPU": 1}), *gpu), group_policy="isolate"
    )
    everything, _ = _engine_candidates(shared_services, request)
    assert len(everything) == 3 * 70
    limited, summaries = _engine_candidates(
        shared_services, CandidateRequest(groups=request.groups, group_policy="isolate", limit=6)
    )
    hosts = Counter(next(u for u, rc, _ in c.allocations if rc == "VCPU") for c in limited)
    assert sorted(hosts.values()) == [2, 2, 2]
    assert len(summaries) == 27


def test_a_combinatorial_explosion_is_bounded(
    shared_services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a limit, a request whose combinations would not fit in memory gets each
    tree's first candidates (all valid) and a warning, not an out-of-memory crash."""
    world = World(
        [Prov("h", inventory={"VCPU": Inv(8)})]
        + [Prov(f"g{g}", parent="h", inventory={"VGPU": Inv(1)}) for g in range(12)]
    )
    world.write(shared_services.db, shared_services.placement.catalog)
    shared_services.placement.index.rebuild()
    shared_services.placement.all_permutations = True
    # The engine's own bound is under test, not the [limits] cap on answers.
    monkeypatch.setattr(shared_services.placement, "max_candidates", 0)
    gpu = tuple(RequestGroup(suffix=f"_{i}", resources={"VGPU": 1}) for i in range(4))
    request = CandidateRequest(groups=gpu, group_policy="isolate")
    everything = set(_engine_candidates(shared_services, request)[0])
    assert len(everything) == 12 * 11 * 10 * 9
    monkeypatch.setattr(engine, "ROW_BUDGET", 500)
    bounded, _ = _engine_candidates(shared_services, request)
    assert 0 < len(bounded) < len(everything)
    assert set(bounded) <= everything
    assert "too many combinations" in caplog.text
