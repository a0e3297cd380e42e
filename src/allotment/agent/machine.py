"""What the machine the agent runs on has, read from Linux's own files under a root
directory (``/`` in production; a fake tree in tests): ``/proc/cpuinfo`` (CPUs, vendor,
model, flags), ``/proc/meminfo`` (memory), ``statvfs`` of the instances path (disk),
``/sys/devices/system/node/node*/`` (NUMA cells: ``cpulist``, ``meminfo``) and
``/sys/devices/system/cpu/cpu*/topology/thread_siblings_list`` (SMT siblings).

CPU flags become os-traits' ``HW_CPU_X86_*`` names the way Nova's libvirt driver maps
them: the flag upper-cased without underscores (``sse4_2`` -> ``HW_CPU_X86_SSE42``),
with the few flags Linux spells differently named explicitly; flags with no trait are
left out. Only traits os-traits defines are published.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import os_traits

# Linux flag -> os-traits suffix, where the generic rule does not give upstream's name.
FLAG_ALIASES = {
    "aes": "AESNI",
    "pni": "SSE3",
    "rtm": "TSX",
    "vaes": "AVX512VAES",
    "gfni": "AVX512GFNI",
    "vpclmulqdq": "AVX512VPCLMULQDQ",
    "sev": "AMD_SEV",
    "sev_es": "AMD_SEV_ES",
    "sev_snp": "AMD_SEV_SNP",
    "ibpb": "AMD_IBPB",
    "md_clear": "INTEL_MD_CLEAR",
    "pcid": "INTEL_PCID",
    "sha_ni": "SHA",
    "pclmulqdq": "CLMUL",
    "fma": "FMA3",
    "bmi1": "BMI",
    "avx512_vnni": "AVX512VNNI",
    "avx512_bf16": "AVX512BF16",
    "avx512_vbmi2": "AVX512VBMI2",
    "avx512_bitalg": "AVX512BITALG",
    "avx512_vpopcntdq": "AVX512VPOPCNTDQ",
    "avx512_fp16": "AVX512FP16",
}


@cache
def _cpu_traits() -> frozenset[str]:
    return frozenset(t for t in os_traits.get_traits() if t.startswith("HW_CPU_"))


def cpu_flag_traits(flags: list[str], arch: str = "x86_64") -> set[str]:
    """os-traits names of the CPU flags the trait library knows (x86 only: other
    architectures' flags have no trait names in common)."""
    if arch not in ("x86_64", "i686", "i386"):
        return set()
    known = _cpu_traits()
    found = set()
    for flag in flags:
        suffix = FLAG_ALIASES.get(flag, flag.upper().replace("_", ""))
        name = f"HW_CPU_X86_{suffix}"
        if name in known:
            found.add(name)
    return found


def parse_cpulist(text: str) -> list[int]:
    """Linux's CPU list format (``0-3,8,10-11``)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


@dataclass
class NumaCellInfo:
    id: int
    cpus: list[int]
    memory_mb: int
    siblings: list[list[int]] = field(default_factory=list)


@dataclass
class Machine:
    """The resources and capabilities the agent publishes."""

    vcpus: int
    memory_mb: int
    disk_gb: int
    arch: str
    vendor: str | None
    model: str | None
    flags: list[str]
    numa_cells: list[NumaCellInfo]

    @property
    def traits(self) -> set[str]:
        return cpu_flag_traits(self.flags, self.arch)

    def numa_topology(self) -> dict[str, Any] | None:
        if not self.numa_cells:
            return None
        return {
            "cells": [
                {"id": c.id, "cpus": c.cpus, "memory_mb": c.memory_mb, "siblings": c.siblings}
                for c in self.numa_cells
            ]
        }


class MachineError(Exception):
    """A file the agent needs is missing or unreadable (the message names it)."""


def _read(root: Path, relative: str) -> str:
    path = root / relative.lstrip("/")
    try:
        return path.read_text()
    except OSError as exc:
        raise MachineError(f"cannot read {path}: {exc.strerror or exc}") from None


def _cpuinfo(text: str) -> tuple[int, str | None, str | None, list[str]]:
    processors = 0
    vendor = model = None
    flags: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            processors += 1
        elif key == "vendor_id" and vendor is None:
            vendor = value
        elif key == "model name" and model is None:
            model = value
        elif key in ("flags", "Features") and not flags:
            flags = sorted(set(value.split()))
    return processors, vendor, model, flags


def _meminfo_mb(text: str, key: str = "MemTotal") -> int:
    # /proc/meminfo: "MemTotal:  16316412 kB"; a node's: "Node 0 MemTotal:  8158206 kB".
    found = re.search(rf"{key}:\s+(\d+)\s*kB", text)
    if found is None:
        raise MachineError(f"no {key} in meminfo")
    return int(found.group(1)) // 1024


def _siblings(root: Path, cpus: list[int]) -> list[list[int]]:
    groups: set[tuple[int, ...]] = set()
    for cpu in cpus:
        path = root / f"sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
        try:
            group = tuple(parse_cpulist(path.read_text()))
        except (OSError, ValueError):
            return []
        if len(group) > 1:
            groups.add(group)
    return [list(g) for g in sorted(groups)]


def _numa_cells(root: Path) -> list[NumaCellInfo]:
    base = root / "sys/devices/system/node"
    if not base.is_dir():
        return []
    cells = []
    for node in sorted(base.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        cpus = parse_cpulist(_read(node, "cpulist"))
        memory = _meminfo_mb(_read(node, "meminfo"))
        cells.append(NumaCellInfo(int(node.name[4:]), cpus, memory, _siblings(root, cpus)))
    return cells


def read_machine(root: Path = Path("/"), disk_path: str = "/var/lib") -> Machine:
    """The machine under ``root``; the disk is ``statvfs`` of ``disk_path`` inside it
    (where instances' disks live: Nova's ``instances_path``)."""
    processors, vendor, model, flags = _cpuinfo(_read(root, "proc/cpuinfo"))
    if processors == 0:
        raise MachineError(f"no processor in {root / 'proc/cpuinfo'}")
    memory_mb = _meminfo_mb(_read(root, "proc/meminfo"))
    target = root / disk_path.lstrip("/")
    try:
        stat = os.statvfs(target)
    except OSError as exc:
        raise MachineError(f"cannot statvfs {target}: {exc.strerror or exc}") from None
    disk_gb = stat.f_blocks * stat.f_frsize // (1024**3)
    return Machine(
        vcpus=processors,
        memory_mb=memory_mb,
        disk_gb=disk_gb,
        arch=platform.machine() or "x86_64",
        vendor=vendor,
        model=model,
        flags=flags,
        numa_cells=_numa_cells(root),
    )
