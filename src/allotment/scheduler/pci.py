"""PCI passthrough requests (``pci_passthrough:alias``) and the host's free device pools.

A flavor asks for devices by alias name and count (``"gpu:2,nic:1"``); ``[pci] alias``
says what each alias matches (vendor, product, device type). A host can serve the request
when, taking the requests in order, enough free devices in matching pools remain — the
same check as Nova's ``PciDeviceStats.support_requests``. For an instance with a NUMA
topology the NUMA fit (``numa.fit``) also names the host cells it is placed on, and each
request's ``numa_policy`` then says which pools may serve it: ``required`` only pools on
those cells, ``legacy`` also pools of no known cell, ``preferred`` any pool (closest
first), ``socket`` pools on a cell of the same CPU socket. Whatever the policy, pools on
the instance's cells are used first when they have enough devices. Physical functions,
vDPA and remote-managed devices serve only requests that ask for them (Nova's rule).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast, get_args

from allotment.config import PciAlias
from allotment.errors import InvalidInput
from allotment.numbers import parse_int
from allotment.scheduler.records import PciPool
from allotment.scheduler.request import PciNumaPolicy
from allotment.scheduler.request import PciRequest as InstancePciRequest

ALIAS_SPEC = "pci_passthrough:alias"
POLICY_SPEC = "hw:pci_numa_affinity_policy"
POLICY_PROPERTY = "hw_pci_numa_affinity_policy"
_POLICIES: tuple[str, ...] = get_args(PciNumaPolicy)
# Spec keys Nova matches against placement's allocation, not against the pool's tags.
_PLACEMENT_KEYS = frozenset({"resource_class", "traits", "rp_uuids"})
# Devices one alias may ask for: each is a request group of its own in placement.
MAX_DEVICES = 64


Spec = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class PciRequest:
    alias: str
    count: int
    # Pool attributes a device must have (vendor_id, product_id, dev_type, ...): a device
    # matching any one of the specs serves the request.
    specs: tuple[Spec, ...]
    # Which pools may serve it relative to the instance's NUMA cells (see the module doc).
    numa_policy: PciNumaPolicy = "legacy"


def from_request_spec(requests: Sequence[InstancePciRequest]) -> list[PciRequest]:
    """The PCI requests Nova put in the RequestSpec (``InstancePCIRequests``: the
    flavor's aliases read with Nova's own ``[pci] alias``, and SR-IOV ports), as its
    PciPassthroughFilter uses them; each spec's keys are matched against the pool's
    vendor, product and tags (``dev_type``, ``physical_network``, ...)."""
    return [
        PciRequest(
            request.alias_name or request.requester_id or request.request_id or "",
            request.count,
            tuple(
                tuple((key, str(value)) for key, value in spec.items() if value is not None)
                for spec in request.spec
            )
            or ((),),
            request.numa_policy or "legacy",
        )
        for request in requests
    ]


def affinity_policy(
    extra_specs: Mapping[str, str], image: Mapping[str, Any]
) -> PciNumaPolicy | None:
    """Nova's ``get_pci_numa_policy_constraint``: the flavor's or the image's PCI NUMA
    affinity policy, which overrides every alias's own; the two must agree."""
    flavor_policy = extra_specs.get(POLICY_SPEC)
    image_policy = image.get(POLICY_PROPERTY)
    if flavor_policy and image_policy and flavor_policy != image_policy:
        raise InvalidInput(
            f"The flavor's {POLICY_SPEC}={flavor_policy} and the image's "
            f"{POLICY_PROPERTY}={image_policy} disagree; set one of them, or the same value"
        )
    policy = flavor_policy or image_policy
    if not policy:
        return None
    if policy not in _POLICIES:
        raise InvalidInput(
            f"PCI NUMA affinity policy {policy!r} is not one of {', '.join(_POLICIES)}"
        )
    return cast(PciNumaPolicy, policy)


def pci_requests(
    extra_specs: Mapping[str, str],
    aliases: Sequence[PciAlias],
    image: Mapping[str, Any] | None = None,
) -> list[PciRequest]:
    """The flavor's PCI requests, in the order given, each with the alias's NUMA policy
    unless the flavor or image sets one; unknown aliases are a 400."""
    raw = extra_specs.get(ALIAS_SPEC)
    if not raw:
        return []
    override = affinity_policy(extra_specs, image or {})
    by_name = {a.name: a for a in aliases}
    requests = []
    for item in raw.split(","):
        name, _, count_text = item.strip().partition(":")
        count = parse_int(count_text, minimum=1, maximum=MAX_DEVICES) if count_text else 1
        if count is None:
            raise InvalidInput(
                f"{ALIAS_SPEC}: {item.strip()!r} is not of the form alias:count with a count "
                f"from 1 to {MAX_DEVICES}"
            )
        alias = by_name.get(name)
        if alias is None:
            known = ", ".join(sorted(by_name)) or "none are configured in [pci] alias"
            raise InvalidInput(f"{ALIAS_SPEC}: unknown PCI alias {name!r} (known: {known})")
        spec = []
        if alias.vendor_id:
            spec.append(("vendor_id", alias.vendor_id))
        if alias.product_id:
            spec.append(("product_id", alias.product_id))
        if alias.device_type:
            spec.append(("dev_type", alias.device_type))
        requests.append(PciRequest(name, count, (tuple(spec),), override or alias.numa_policy))
    return requests


def _matches(pool: PciPool, specs: tuple[Spec, ...]) -> bool:
    return any(_matches_one(pool, spec) for spec in specs)


def _matches_one(pool: PciPool, spec: Spec) -> bool:
    for key, wanted in spec:
        if key in _PLACEMENT_KEYS:
            continue
        if key == "vendor_id":
            have: str | None = pool.vendor_id
        elif key == "product_id":
            have = pool.product_id
        else:
            have = pool.tags.get(key)
        if have is None or have.lower() != wanted.lower():
            return False
    return True


def _numa_affine(
    pools: Sequence[PciPool],
    counts: Sequence[int],
    matching: list[int],
    request: PciRequest,
    cells: Collection[int],
    sockets: Mapping[int, int | None],
) -> list[int]:
    """Nova's ``_filter_pools_for_numa_cells``: of the ``matching`` pools, those the
    request's NUMA policy lets serve an instance on host cells ``cells``, in the order
    they are to be used. Pools on those cells come first whenever they are enough."""
    local = [i for i in matching if pools[i].numa_node in cells]
    if request.numa_policy == "required" or sum(counts[i] for i in local) >= request.count:
        return local
    if request.numa_policy == "socket":
        # Without a socket for every host cell the policy cannot be honoured (Nova's rule).
        if not sockets or any(s is None for s in sockets.values()):
            return []
        wanted = {sockets[c] for c in cells if c in sockets}
        nodes = {cell for cell, socket in sockets.items() if socket in wanted}
        return [i for i in matching if pools[i].numa_node in nodes]
    # Devices of no known NUMA node are as good as local ones for "legacy".
    near = [i for i in matching if pools[i].numa_node is None or pools[i].numa_node in cells]
    if request.numa_policy == "legacy" or sum(counts[i] for i in near) >= request.count:
        return near
    near_set = set(near)
    return sorted(matching, key=lambda i: i not in near_set)


def _truthy(value: str | None) -> bool:
    """oslo's ``bool_from_string`` for a tag: absent or unrecognised is false."""
    return (value or "").strip().lower() in ("1", "t", "true", "on", "y", "yes")


def _special_kinds_unasked(
    pools: Sequence[PciPool], matching: list[int], request: PciRequest
) -> list[int]:
    """Nova's ``_filter_pools_for_unrequested_pfs`` / ``_vdpa_devices`` /
    ``_remote_managed_devices``: physical functions, vDPA devices and remote-managed
    devices serve only requests whose specs ask for them."""
    specs = [dict(spec) for spec in request.specs]
    wants_pf = any(spec.get("dev_type") == "type-PF" for spec in specs)
    wants_vdpa = any(spec.get("dev_type") == "vdpa" for spec in specs)
    wants_remote = any(_truthy(spec.get("remote_managed")) for spec in specs)
    kept = []
    for i in matching:
        tags = pools[i].tags
        if tags.get("dev_type") == "type-PF" and not wants_pf:
            continue
        if tags.get("dev_type") == "vdpa" and not wants_vdpa:
            continue
        if _truthy(tags.get("remote_managed")) and not wants_remote:
            continue
        kept.append(i)
    return kept


def allocate(
    pools: Sequence[PciPool],
    requests: Sequence[PciRequest],
    cells: Collection[int] | None = None,
    sockets: Mapping[int, int | None] | None = None,
) -> tuple[PciPool, ...] | None:
    """The pools left after serving ``requests`` in order, or None if one cannot be served.

    ``cells``: the host NUMA cells the instance is placed on (None: it has no NUMA
    topology, and devices may come from anywhere); ``sockets``: every host cell's CPU
    socket, for ``numa_policy=socket``."""
    counts = [p.count for p in pools]
    for request in requests:
        needed = request.count
        matching = [i for i, pool in enumerate(pools) if _matches(pool, request.specs)]
        if cells:
            matching = _numa_affine(pools, counts, matching, request, cells, sockets or {})
        matching = _special_kinds_unasked(pools, matching, request)
        if sum(counts[i] for i in matching) < needed:
            return None
        for i in matching:
            take = min(counts[i], needed)
            counts[i] -= take
            needed -= take
            if not needed:
                break
    return tuple(
        pool if pool.count == count else pool.model_copy(update={"count": count})
        for pool, count in zip(pools, counts, strict=True)
    )


def free_devices(pools: Sequence[PciPool]) -> int:
    return sum(p.count for p in pools)
