"""PCI passthrough requests (``pci_passthrough:alias``) and the host's free device pools.

A flavor asks for devices by alias name and count (``"gpu:2,nic:1"``); ``[pci] alias``
says what each alias matches (vendor, product, device type). A host can serve the request
when, taking the requests in order, enough free devices in matching pools remain — the
same check as Nova's ``PciDeviceStats.support_requests``. NUMA affinity between devices
and pinned CPUs is not checked here (the host report gives pools, not a device-to-cell
map of the guest); ``numa_policy=required`` aliases therefore match as ``legacy`` ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from allotment.config import PciAlias
from allotment.errors import InvalidInput
from allotment.numbers import parse_int
from allotment.scheduler.records import PciPool
from allotment.scheduler.request import PciRequest as InstancePciRequest

ALIAS_SPEC = "pci_passthrough:alias"
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
        )
        for request in requests
    ]


def pci_requests(extra_specs: Mapping[str, str], aliases: Sequence[PciAlias]) -> list[PciRequest]:
    """The flavor's PCI requests, in the order given; unknown aliases are a 400."""
    raw = extra_specs.get(ALIAS_SPEC)
    if not raw:
        return []
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
        requests.append(PciRequest(name, count, (tuple(spec),)))
    return requests


def _matches(pool: PciPool, specs: tuple[Spec, ...]) -> bool:
    return any(_matches_one(pool, spec) for spec in specs)


def _matches_one(pool: PciPool, spec: Spec) -> bool:
    for key, wanted in spec:
        if key == "vendor_id":
            have: str | None = pool.vendor_id
        elif key == "product_id":
            have = pool.product_id
        else:
            have = pool.tags.get(key)
        if have is None or have.lower() != wanted.lower():
            return False
    return True


def allocate(
    pools: Sequence[PciPool], requests: Sequence[PciRequest]
) -> tuple[PciPool, ...] | None:
    """The pools left after serving ``requests`` in order, or None if one cannot be served."""
    counts = [p.count for p in pools]
    for request in requests:
        needed = request.count
        matching = [i for i, pool in enumerate(pools) if _matches(pool, request.specs)]
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
