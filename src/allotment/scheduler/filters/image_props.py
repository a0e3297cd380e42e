"""ImagePropertiesFilter: the host supports the image's architecture, hypervisor type and
VM mode (``hw_architecture``, ``img_hv_type``, ``hw_vm_mode``), its requested hypervisor
version (``img_hv_requested_version``) and physical address bits
(``hw_maxphysaddr_bits``). Evaluated once per distinct host capability set.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from allotment.errors import InvalidInput
from allotment.scheduler.framework import (
    HostFilter,
    HostRecord,
    HostView,
    IntArray,
    Verdict,
    setting,
)

_ARCH_ALIASES = {"i386": "i686", "i486": "i686", "i586": "i686", "x86_32": "i686"}
_ARCH_ALIASES |= {"x86_32p": "i686", "amd64": "x86_64"}
_VM_MODE_ALIASES = {"pv": "xen", "hv": "hvm", "baremetal": "hvm"}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
}
_PREDICATE = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*([0-9]+(?:\.[0-9]+)*)\s*$")


def canonical_arch(name: str | None) -> str | None:
    if name is None:
        return None
    lowered = name.lower()
    return _ARCH_ALIASES.get(lowered, lowered)


def canonical_hv_type(name: str | None) -> str | None:
    if name is None:
        return None
    lowered = name.lower()
    return "xen" if lowered == "xapi" else lowered


def canonical_vm_mode(name: str | None) -> str | None:
    if name is None:
        return None
    lowered = name.lower()
    return _VM_MODE_ALIASES.get(lowered, lowered)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def hypervisor_version_text(version: int) -> str:
    """oslo's convert_version_to_str: 7002000 -> '7.2.0'."""
    parts = []
    while version:
        parts.append(str(version % 1000))
        version //= 1000
    return ".".join(reversed(parts)) or "0"


def version_satisfies(predicate: str, version: str) -> bool:
    """oslo's VersionPredicate: comma-separated ``<op> <version>`` clauses, all must hold."""
    have = version_tuple(version)
    for clause in predicate.split(","):
        found = _PREDICATE.match(clause)
        if not found:
            raise InvalidInput(
                f"img_hv_requested_version={predicate!r}: expected clauses like '>=6.0'"
            )
        op, wanted = found.groups()
        want = version_tuple(wanted)
        width = max(len(have), len(want))
        padded_have = have + (0,) * (width - len(have))
        padded_want = want + (0,) * (width - len(want))
        if not _COMPARE[op](padded_have, padded_want):
            return False
    return True


# Why a host fails, by how far its best supported-instance triple got through the checks.
_FAILURES = (
    "",
    "image_arch",
    "image_hv_type",
    "image_vm_mode",
    "image_hv_version",
    "image_maxphysaddr",
)

Wanted = tuple[str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class ImagePropertiesOptions:
    default_architecture: str | None = setting(
        "filter_scheduler.image_properties_default_architecture"
    )


class ImagePropertiesFilter(HostFilter):
    options_type = ImagePropertiesOptions
    options: ImagePropertiesOptions
    run_on_rebuild = True
    run_filter_once_per_request = True
    reason_code = "image_props"

    def prepare(self, view: HostView) -> bool:
        props = view.spec.image_properties
        checked: Wanted = (
            canonical_arch(props.get("hw_architecture", self.options.default_architecture)),
            canonical_hv_type(props.get("img_hv_type")),
            canonical_vm_mode(props.get("hw_vm_mode")),
        )
        view.state.write(self.name, checked)
        return any(checked)

    def _wanted(self, view: HostView) -> Wanted:
        """(architecture, hypervisor type, VM mode) the image needs, from ``prepare``."""
        checked: Wanted = view.state.read(self.name, tuple)
        return checked

    def passes(self, view: HostView, pos: IntArray) -> Verdict:
        checked = self._wanted(view)
        props = view.spec.image_properties
        requested_version = props.get("img_hv_requested_version")
        bits_required = props.get("hw_maxphysaddr_bits")

        def read(record: HostRecord) -> tuple[Any, ...]:
            maxphys = record.report.cpu_info.model_dump().get("maxphysaddr") or {}
            bits = maxphys.get("bits") if isinstance(maxphys, dict) else None
            return (
                tuple(tuple(s) for s in record.report.supported_instances),
                record.report.hypervisor_version,
                bits,
            )

        def evaluate(found: tuple[Any, ...]) -> int:
            # 0 when some triple passes every check, else the failure of the triple that
            # got furthest (an index into _FAILURES).
            supported, version, bits = found
            # A host that supports nothing fails on the first property the image names.
            furthest = next(i for i, p in enumerate(checked) if p) + 1
            for triple in supported:
                step = next(
                    (i for i, p in enumerate(checked) if p and p not in triple), len(checked)
                )
                if step == len(checked):
                    if (
                        version
                        and requested_version
                        and not version_satisfies(
                            str(requested_version), hypervisor_version_text(version)
                        )
                    ):
                        step = 3
                    elif bits_required and bits and int(bits) < int(bits_required):
                        step = 4
                    else:
                        return 0
                furthest = max(furthest, step + 1)
            return furthest

        codes = view.per_value("image_props", read, evaluate, pos, np.int64)
        return Verdict.from_codes(codes, _FAILURES)

    def reason(self, view: HostView, pos: int) -> str:
        wanted = "/".join(p or "*" for p in self._wanted(view))
        supported = view.record(pos).report.supported_instances
        return f"image needs {wanted}; host supports {[list(s) for s in supported]}"
