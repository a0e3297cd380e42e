"""NUMA and CPU-pinning requests (``hw:*`` extra specs, ``hw_*`` image properties) and
fitting them onto a host's reported NUMA topology.

This follows ``nova.virt.hardware`` for what NUMATopologyFilter and the PCPU translation
need: the CPU policy (shared / dedicated / mixed), the thread policy (prefer / isolate /
require), ``hw:emulator_threads_policy=isolate``, ``hw:numa_nodes`` with automatic or
explicit (``hw:numa_cpus.N`` / ``hw:numa_mem.N``) cell layouts, and Nova's cell fitting
rules (pinned cells cannot oversubscribe; shared cells respect the host's allocation
ratios; host cells tried in Nova's order; the PCI devices and the networks the instance
needs close to the cells it is placed on, see ``fit``). Explicit huge pages
(``hw:mem_page_size``) are treated as "needs a NUMA topology" without per-page-size
accounting, which the host report does not carry.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from allotment.errors import InvalidInput
from allotment.numbers import parse_int
from allotment.scheduler import pci
from allotment.scheduler.records import NetworkMetadata, NumaTopology, PciPool

CpuPolicy = Literal["shared", "dedicated", "mixed"]
ThreadPolicy = Literal["prefer", "isolate", "require"]

# Bounds on what a guest can ask for, checked before any per-CPU or per-node set is built
# (a flavor with 2**31 pinned vCPUs would otherwise build a set of 2**31 ints).
MAX_GUEST_CPUS = 8192
MAX_NUMA_NODES = 128
_CPU_POLICIES = ("shared", "dedicated", "mixed")
_THREAD_POLICIES = ("prefer", "isolate", "require")


def parse_cpu_spec(spec: str) -> set[int]:
    """Nova's CPU set syntax: ``"0-3,^2,6"`` (ranges, single CPUs, ``^`` exclusions)."""
    include: set[int] = set()
    exclude: set[int] = set()
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        target = include
        if item.startswith("^"):
            target = exclude
            item = item[1:]
        low_text, _, high_text = item.partition("-")
        low = parse_int(low_text.strip(), maximum=MAX_GUEST_CPUS - 1)
        high = parse_int(high_text.strip(), maximum=MAX_GUEST_CPUS - 1) if high_text else low
        if low is None or high is None or low > high:
            raise InvalidInput(
                f"Invalid CPU range {raw.strip()!r} in {spec!r}: CPUs are numbered 0 to "
                f"{MAX_GUEST_CPUS - 1}"
            )
        target.update(range(low, high + 1))
    return include - exclude


def _get(extra_specs: Mapping[str, str], image: Mapping[str, Any], spec: str, prop: str) -> Any:
    value = extra_specs.get(spec)
    return value if value is not None else image.get(prop)


def _requested(extra_specs: Mapping[str, str], rc: str) -> int:
    """The amount of ``rc`` the extra specs ask for explicitly, over all request groups."""
    total = 0
    for key, value in extra_specs.items():
        prefix, _, name = key.partition(":")
        if name == rc and prefix.startswith("resources"):
            total += parse_int(value) or 0
    return total


@dataclass(frozen=True, slots=True)
class CpuConstraints:
    """The CPU policy a flavor and image ask for, resolved as Nova resolves conflicts."""

    # The policy follows from explicit resources*:VCPU / PCPU extra specs (no translation).
    explicit: bool
    policy: CpuPolicy | None
    thread_policy: ThreadPolicy | None
    emulator_threads_isolate: bool
    # vCPU indexes that are pinned (all of them for "dedicated"; the mask for "mixed").
    dedicated: frozenset[int]


def cpu_constraints(
    vcpus: int, extra_specs: Mapping[str, str], image: Mapping[str, Any]
) -> CpuConstraints:
    flavor_policy = extra_specs.get("hw:cpu_policy")
    image_policy = image.get("hw_cpu_policy")
    for value, where in ((flavor_policy, "hw:cpu_policy"), (image_policy, "hw_cpu_policy")):
        if value is not None and value not in _CPU_POLICIES:
            raise InvalidInput(f"{where}={value!r} is not one of {', '.join(_CPU_POLICIES)}")
    policy: Any
    if flavor_policy in ("shared", "mixed") and image_policy == "dedicated":
        raise InvalidInput(
            f"The image asks for hw_cpu_policy=dedicated but the flavor sets "
            f"hw:cpu_policy={flavor_policy}; the image cannot override the flavor."
        )
    policy = flavor_policy or image_policy

    flavor_threads = extra_specs.get("hw:cpu_thread_policy")
    image_threads = image.get("hw_cpu_thread_policy")
    for value, where in (
        (flavor_threads, "hw:cpu_thread_policy"),
        (image_threads, "hw_cpu_thread_policy"),
    ):
        if value is not None and value not in _THREAD_POLICIES:
            raise InvalidInput(f"{where}={value!r} is not one of {', '.join(_THREAD_POLICIES)}")
    thread_policy: Any = flavor_threads
    if flavor_threads in (None, "prefer"):
        thread_policy = image_threads or flavor_threads

    hyperthreading = extra_specs.get("trait:HW_CPU_HYPERTHREADING")
    if hyperthreading and thread_policy:
        raise InvalidInput(
            "trait:HW_CPU_HYPERTHREADING cannot be combined with hw:cpu_thread_policy or "
            "hw_cpu_thread_policy; use one or the other"
        )
    if hyperthreading == "forbidden":
        thread_policy = "isolate"
    elif hyperthreading == "required":
        thread_policy = "require"

    emulator = extra_specs.get("hw:emulator_threads_policy")
    if emulator not in (None, "share", "isolate"):
        raise InvalidInput(f"hw:emulator_threads_policy={emulator!r} is not share or isolate")

    explicit_vcpu = _requested(extra_specs, "VCPU")
    explicit_pcpu = _requested(extra_specs, "PCPU")
    if policy and (explicit_vcpu or explicit_pcpu):
        raise InvalidInput(
            "resources:VCPU / resources:PCPU cannot be combined with hw:cpu_policy or "
            "hw_cpu_policy; use one or the other"
        )
    if explicit_vcpu and explicit_pcpu:
        raise InvalidInput("resources:VCPU and resources:PCPU cannot both be given")
    if explicit_pcpu:
        expected = vcpus + (1 if emulator == "isolate" else 0)
        if explicit_pcpu != expected:
            raise InvalidInput(
                f"resources:PCPU={explicit_pcpu} must equal the flavor's vCPUs ({vcpus}), plus "
                "one with hw:emulator_threads_policy=isolate"
            )
        policy = "dedicated"
    elif explicit_vcpu:
        policy = "shared"

    mask = extra_specs.get("hw:cpu_dedicated_mask")
    if policy in ("dedicated", "mixed"):
        _check_guest_cpus(vcpus, f"hw:cpu_policy={policy}")
    dedicated: set[int] = set()
    if policy in (None, "shared"):
        if thread_policy and not hyperthreading:
            raise InvalidInput(
                "A CPU thread policy needs hw:cpu_policy=dedicated or mixed (got "
                f"{policy or 'no policy'})"
            )
        if emulator == "isolate":
            raise InvalidInput("hw:emulator_threads_policy=isolate needs pinned CPUs")
        if mask:
            raise InvalidInput("hw:cpu_dedicated_mask needs hw:cpu_policy=mixed")
    elif policy == "dedicated":
        if mask:
            raise InvalidInput("hw:cpu_dedicated_mask needs hw:cpu_policy=mixed")
        dedicated = set(range(vcpus))
    else:
        if not mask:
            raise InvalidInput("hw:cpu_policy=mixed needs hw:cpu_dedicated_mask")
        spec = f"0-{vcpus - 1},{mask}" if mask.strip().startswith("^") else mask
        dedicated = parse_cpu_spec(spec)
        if not dedicated or not dedicated < set(range(vcpus)):
            raise InvalidInput(
                f"hw:cpu_dedicated_mask={mask!r} must name some but not all of the "
                f"flavor's {vcpus} vCPUs"
            )
    return CpuConstraints(
        explicit=bool(explicit_vcpu or explicit_pcpu),
        policy=policy,
        thread_policy=thread_policy,
        emulator_threads_isolate=emulator == "isolate" and policy is not None,
        dedicated=frozenset(dedicated),
    )


def _check_guest_cpus(vcpus: int, what: str) -> None:
    if vcpus > MAX_GUEST_CPUS:
        raise InvalidInput(
            f"{what} supports at most {MAX_GUEST_CPUS} vCPUs (the flavor has {vcpus})"
        )


@dataclass(frozen=True, slots=True)
class InstanceCell:
    id: int
    cpus: frozenset[int]
    # The subset of ``cpus`` that must be pinned to dedicated host CPUs.
    pinned: frozenset[int]
    memory_mb: int

    @property
    def shared(self) -> frozenset[int]:
        return self.cpus - self.pinned


@dataclass(frozen=True, slots=True)
class NumaRequest:
    cells: tuple[InstanceCell, ...]
    cpu: CpuConstraints

    @property
    def pinned(self) -> bool:
        return self.cpu.policy in ("dedicated", "mixed")


def numa_request(
    vcpus: int, memory_mb: int, extra_specs: Mapping[str, str], image: Mapping[str, Any]
) -> NumaRequest | None:
    """The instance NUMA topology a flavor/image asks for; None when it asks for none."""
    cpu = cpu_constraints(vcpus, extra_specs, image)
    raw_nodes = _get(extra_specs, image, "hw:numa_nodes", "hw_numa_nodes")
    pagesize = _get(extra_specs, image, "hw:mem_page_size", "hw_mem_page_size")
    if raw_nodes is None and pagesize is None and cpu.policy not in ("dedicated", "mixed"):
        return None
    nodes = parse_int(str(raw_nodes), minimum=1, maximum=MAX_NUMA_NODES) if raw_nodes else 1
    if nodes is None:
        raise InvalidInput(
            f"hw:numa_nodes={raw_nodes!r} must be a positive integer of at most {MAX_NUMA_NODES}"
        )
    _check_guest_cpus(vcpus, "A NUMA topology")
    cpu_lists = [
        _get(extra_specs, image, f"hw:numa_cpus.{i}", f"hw_numa_cpus.{i}") for i in range(nodes)
    ]
    mem_lists = [
        _get(extra_specs, image, f"hw:numa_mem.{i}", f"hw_numa_mem.{i}") for i in range(nodes)
    ]
    all_cpus = set(range(vcpus))
    cells: list[InstanceCell] = []
    if all(c is None for c in cpu_lists) and all(m is None for m in mem_lists):
        if vcpus % nodes or memory_mb % nodes:
            raise InvalidInput(
                f"{vcpus} vCPUs and {memory_mb} MB cannot be split evenly over {nodes} NUMA "
                "nodes; give hw:numa_cpus.N and hw:numa_mem.N explicitly"
            )
        per_cpu, per_mem = vcpus // nodes, memory_mb // nodes
        for i in range(nodes):
            cpus = frozenset(range(i * per_cpu, (i + 1) * per_cpu))
            cells.append(InstanceCell(i, cpus, cpus & cpu.dedicated, per_mem))
    elif any(c is None for c in cpu_lists) or any(m is None for m in mem_lists):
        raise InvalidInput(
            f"hw:numa_cpus.N and hw:numa_mem.N must both be given for all {nodes} NUMA nodes"
        )
    else:
        seen: set[int] = set()
        total_mem = 0
        for i in range(nodes):
            cpus = frozenset(parse_cpu_spec(str(cpu_lists[i])))
            if not cpus <= all_cpus or cpus & seen:
                raise InvalidInput(
                    f"hw:numa_cpus.{i}={cpu_lists[i]!r} names vCPUs outside 0-{vcpus - 1} or "
                    "already given to another node"
                )
            seen |= cpus
            mem = parse_int(str(mem_lists[i]), maximum=memory_mb)
            if mem is None:
                raise InvalidInput(
                    f"hw:numa_mem.{i}={mem_lists[i]!r} is not a number of MB from 0 to the "
                    f"flavor's {memory_mb}"
                )
            total_mem += mem
            cells.append(InstanceCell(i, cpus, cpus & cpu.dedicated, mem))
        if seen != all_cpus:
            raise InvalidInput("hw:numa_cpus.N must assign every vCPU to a NUMA node")
        if total_mem != memory_mb:
            raise InvalidInput(f"hw:numa_mem.N must add up to the flavor's {memory_mb} MB")
    return NumaRequest(tuple(cells), cpu)


@dataclass(frozen=True, slots=True)
class HostCell:
    id: int
    cpus: frozenset[int]
    pcpus: frozenset[int]
    memory_mb: int
    pinned: frozenset[int]
    siblings: tuple[frozenset[int], ...]
    cpu_usage: int
    memory_usage: int
    # Networks with NUMA affinity to this cell, and its CPU socket (None: unknown).
    physnets: frozenset[str] = frozenset()
    tunneled: bool = False
    socket: int | None = None

    @property
    def free_memory_mb(self) -> int:
        return self.memory_mb - self.memory_usage

    @property
    def free_pcpus(self) -> frozenset[int]:
        return self.pcpus - self.pinned

    @property
    def has_threads(self) -> bool:
        return any(len(s) > 1 for s in self.siblings)


@dataclass(frozen=True, slots=True)
class HostNuma:
    """A host's NUMA cells with their current usage (consumption makes a new one)."""

    cells: tuple[HostCell, ...]

    @classmethod
    def from_report(cls, topology: NumaTopology) -> HostNuma:
        cells = []
        for cell in topology.cells:
            cpus = frozenset(cell.cpus)
            pcpus = frozenset(cell.pcpus) if cell.pcpus is not None else cpus
            siblings = tuple(frozenset(s) & pcpus for s in cell.siblings if frozenset(s) & pcpus)
            covered = frozenset().union(*siblings) if siblings else frozenset()
            # CPUs in no sibling set are single-thread cores.
            siblings += tuple(frozenset({c}) for c in sorted(pcpus - covered))
            network = cell.network_metadata or NetworkMetadata()
            cells.append(
                HostCell(
                    id=cell.id,
                    cpus=cpus,
                    pcpus=pcpus,
                    memory_mb=cell.memory_mb,
                    pinned=frozenset(cell.pinned_cpus),
                    siblings=siblings,
                    cpu_usage=cell.cpu_usage,
                    memory_usage=cell.memory_usage,
                    physnets=frozenset(network.physnets),
                    tunneled=network.tunneled,
                    socket=cell.socket,
                )
            )
        return cls(tuple(cells))

    @property
    def has_threads(self) -> bool:
        return any(c.has_threads for c in self.cells)


@dataclass(frozen=True, slots=True)
class CellFit:
    host_cell: int
    pinned: frozenset[int]


def _pack(
    host: HostCell, count: int, thread_policy: ThreadPolicy | None, reserved: int
) -> frozenset[int] | None:
    """Host CPUs to pin ``count`` vCPUs (+``reserved`` emulator CPUs) to, as Nova packs them:
    fullest-usable cores first, whole cores for ``isolate``, siblings only for ``require``.
    Returns every CPU the instance takes out of the free set, or None."""
    free = host.free_pcpus
    free_siblings = [s & free for s in host.siblings]
    threads_per_core = max((len(s) for s in host.siblings), default=1) or 1
    if thread_policy == "isolate":
        whole = [s for s in free_siblings if len(s) >= threads_per_core]
        if len(whole) < count + reserved:
            return None
        taken: set[int] = set()
        for core in whole[: count + reserved]:
            taken |= core
        return frozenset(taken)
    if thread_policy == "require" and threads_per_core <= 1:
        return None
    for threads in range(threads_per_core, 0, -1):
        if thread_policy == "require" and threads <= 1:
            break
        cores = [s for s in free_siblings if len(s) >= threads]
        if threads * len(cores) < count:
            continue
        chosen = list(itertools.chain.from_iterable(sorted(c)[:threads] for c in cores))[:count]
        rest = sorted(free - set(chosen))
        if len(rest) < reserved:
            continue
        return frozenset(chosen) | frozenset(rest[:reserved])
    return None


def _fit_cell(
    host: HostCell,
    cell: InstanceCell,
    request: NumaRequest,
    cpu_ratio: float,
    ram_ratio: float,
    reserved: int,
) -> CellFit | None:
    if request.pinned:
        if host.memory_mb - host.memory_usage < cell.memory_mb:
            return None
        if len(cell.pinned) + reserved > len(host.pcpus):
            return None
    elif host.memory_mb < cell.memory_mb:
        return None
    if cell.shared and len(cell.shared) > len(host.cpus):
        return None
    taken: frozenset[int] = frozenset()
    if request.pinned:
        if len(cell.pinned) + reserved > len(host.free_pcpus):
            return None
        packed = _pack(host, len(cell.pinned), request.cpu.thread_policy, reserved)
        if packed is None:
            return None
        taken = packed
    if request.cpu.policy != "dedicated":
        if host.cpu_usage + len(cell.shared) > len(host.cpus) * cpu_ratio:
            return None
        if host.memory_usage + cell.memory_mb > host.memory_mb * ram_ratio:
            return None
    return CellFit(host.id, taken)


def _ordered_cells(
    host: HostNuma, request: NumaRequest, pools: Sequence[PciPool], wants_pci: bool
) -> Sequence[HostCell]:
    """The host cells in the order Nova tries them when the instance needs fewer cells
    than the host has (its default, spreading ``packing_host_numa_cells_allocation_strategy
    = False``): most free memory first, then least used shared CPUs (or most free
    dedicated CPUs for a pinned instance), then cells with the most PCI devices first when
    the instance asks for devices, last when it does not. Each sort is stable, so ties keep
    the previous order."""
    if len(host.cells) == len(request.cells):
        return host.cells
    cells = sorted(host.cells, key=lambda c: c.free_memory_mb, reverse=True)
    if request.cpu.policy in (None, "shared"):
        cells = sorted(cells, key=lambda c: c.cpu_usage)
    else:
        cells = sorted(cells, key=lambda c: len(c.free_pcpus), reverse=True)
    devices: dict[int | None, int] = {}
    for pool in pools:
        devices[pool.numa_node] = devices.get(pool.numa_node, 0) + pool.count
    return sorted(cells, key=lambda c: devices.get(c.id, 0), reverse=wants_pci)


def _supports_networks(
    host: HostNuma, chosen: Sequence[HostCell], network: NetworkMetadata
) -> bool:
    """Nova's ``_numa_cells_support_network_metadata``: a physnet the instance uses that
    has NUMA affinity to some host cell must have it to one of the chosen cells, and so
    must the tunnel when the instance uses a tunneled network. Networks no cell claims are
    local to none and go anywhere."""
    missing = set(network.physnets).difference(*(c.physnets for c in chosen))
    if any(missing & c.physnets for c in host.cells):
        return False
    if network.tunneled and not any(c.tunneled for c in chosen):
        return not any(c.tunneled for c in host.cells)
    return True


def fit(
    host: HostNuma,
    request: NumaRequest,
    cpu_ratio: float,
    ram_ratio: float,
    *,
    network: NetworkMetadata | None = None,
    pci_requests: Sequence[pci.PciRequest] = (),
    pci_pools: Sequence[PciPool] = (),
) -> tuple[CellFit, ...] | None:
    """The first assignment of instance cells to distinct host cells that fits, trying
    host-cell permutations in Nova's order (``_ordered_cells``), or None.

    An assignment fits when every instance cell fits its host cell, the PCI requests can
    be served from pools their ``numa_policy`` allows for the chosen cells, and the
    instance's networks (``network``: RequestSpec.network_metadata) have their NUMA
    affinity on the chosen cells — Nova's ``numa_fit_instance_to_host``."""
    if len(host.cells) < len(request.cells):
        return None
    ordered = _ordered_cells(host, request, pci_pools, bool(pci_requests))
    sockets = {c.id: c.socket for c in host.cells}
    # Whether an instance cell fits a host cell does not depend on the other cells of
    # the permutation (except the emulator CPU on the first), so each pair is tried once.
    tried: dict[tuple[int, int, int], CellFit | None] = {}
    for cells in itertools.permutations(ordered, len(request.cells)):
        fits: list[CellFit] = []
        for position, (host_cell, cell) in enumerate(zip(cells, request.cells, strict=True)):
            # The emulator thread's extra pinned CPU goes on the first cell, as in Nova.
            reserved = 1 if request.cpu.emulator_threads_isolate and position == 0 else 0
            key = (host_cell.id, cell.id, reserved)
            if key not in tried:
                tried[key] = _fit_cell(host_cell, cell, request, cpu_ratio, ram_ratio, reserved)
            found = tried[key]
            if found is None:
                break
            fits.append(found)
        else:
            chosen = [f.host_cell for f in fits]
            if pci_requests and pci.allocate(pci_pools, pci_requests, chosen, sockets) is None:
                continue
            if network is not None and not _supports_networks(host, cells, network):
                continue
            return tuple(fits)
    return None


def consume(host: HostNuma, request: NumaRequest, fits: Sequence[CellFit]) -> HostNuma:
    """The host topology after the instance is placed as ``fits`` says."""
    by_id = {f.host_cell: (f, cell) for f, cell in zip(fits, request.cells, strict=True)}
    cells = []
    for host_cell in host.cells:
        if host_cell.id not in by_id:
            cells.append(host_cell)
            continue
        found, cell = by_id[host_cell.id]
        cells.append(
            replace(
                host_cell,
                pinned=host_cell.pinned | found.pinned,
                cpu_usage=host_cell.cpu_usage + len(cell.shared),
                memory_usage=host_cell.memory_usage + cell.memory_mb,
            )
        )
    return HostNuma(tuple(cells))
