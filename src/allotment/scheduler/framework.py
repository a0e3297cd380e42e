"""The scheduler framework: the one module host filters and weighers import.

After kube-scheduler's ``framework/interface.go`` and Nomad's ``FilterNode(node,
reason)``: a plugin sees a narrow ``HostView`` of one scheduling cycle (the snapshot
columns it may read, per-host records, the cached per-value / per-aggregate-set helpers,
the request, the clock) and its own typed options, never the cycle or the settings. Its
``prepare`` step runs once per request and may store what it precomputes in the view's
``CycleState``; ``passes`` answers for an array of candidate positions with a mask, or a
``Verdict`` that also says, per short reason code, which hosts were rejected why (the
cycle tallies these per filter and per reason in the funnel).

Options: a plugin's ``options_type`` is a frozen dataclass whose fields name the setting
they come from (``setting("filter_scheduler.max_io_ops_per_host")``); the pipeline reads
them from the configuration and passes the instance to the plugin's constructor.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from allotment.scheduler.numa import HostNuma, NumaRequest
from allotment.scheduler.numa import fit as numa_fit
from allotment.scheduler.pci import PciRequest
from allotment.scheduler.pci import allocate as pci_allocate
from allotment.scheduler.pci import free_devices as pci_free_devices
from allotment.scheduler.records import HostRecord, InstanceInfo, PciPool
from allotment.scheduler.request import RequestSpec
from allotment.scheduler.snapshot import BoolArray, FloatArray, IntArray

__all__ = [
    "BoolArray",
    "Column",
    "CycleState",
    "FloatArray",
    "HostFilter",
    "HostNuma",
    "HostRecord",
    "HostView",
    "HostWeigher",
    "InstanceInfo",
    "IntArray",
    "NoOptions",
    "NumaRequest",
    "PciPool",
    "PciRequest",
    "RequestSpec",
    "Verdict",
    "WeigherFailed",
    "build_options",
    "numa_fit",
    "pci_allocate",
    "pci_free_devices",
    "setting",
]

T = TypeVar("T")

# The static snapshot columns a plugin may read per position (``HostView.column``).
Column = Literal[
    "heartbeat",
    "disabled",
    "forced_down",
    "ipv4",
    "pci_free",
    "failed_builds",
    "hypervisor_version",
]


# -- plugin options ----------------------------------------------------------------------


def setting(path: str) -> Any:
    """An option field read from the configuration at ``path`` (``"section.key"``)."""
    return dataclasses.field(metadata={"setting": path})


@dataclasses.dataclass(frozen=True, slots=True)
class NoOptions:
    """The options of a plugin that has none."""


def build_options(options_type: type[Any], read: Callable[[str], Any]) -> Any:
    """An ``options_type`` instance with every field read by its setting path."""
    values = {f.name: read(f.metadata["setting"]) for f in dataclasses.fields(options_type)}
    return options_type(**values)


# -- what a plugin sees ------------------------------------------------------------------


class CycleState:
    """Per-request scratch space: what a plugin's ``prepare`` computed once, read back by
    its ``passes`` and ``reason`` (kube-scheduler's CycleState). Keys are plugin names."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[str, object] = {}

    def write(self, key: str, value: object) -> None:
        self._data[key] = value

    def cached(self, key: str, compute: Callable[[], T]) -> T:
        """The value under ``key``, computed by ``compute`` the first time it is asked."""
        if key not in self._data:
            self._data[key] = compute()
        return self._data[key]  # type: ignore[return-value]

    def read(self, key: str, kind: type[T]) -> T:
        value = self._data[key]
        if not isinstance(value, kind):
            raise TypeError(f"cycle state {key!r} holds {type(value).__name__}, not {kind}")
        return value


class HostView(Protocol):
    """One scheduling cycle as a plugin sees it. Positions index the candidate hosts of the
    cycle; the per-position arrays below are the cycle's own copies, updated as instances
    are placed."""

    @property
    def spec(self) -> RequestSpec: ...
    @property
    def now(self) -> float: ...
    @property
    def state(self) -> CycleState: ...
    @property
    def size(self) -> int: ...
    # The instance being placed (None when the caller did not name it).
    @property
    def instance_uuid(self) -> str | None: ...
    @property
    def numa_request(self) -> NumaRequest | None: ...
    @property
    def pci_requests(self) -> Sequence[PciRequest]: ...
    @property
    def free_ram_mb(self) -> FloatArray: ...
    @property
    def free_disk_mb(self) -> FloatArray: ...
    @property
    def free_vcpus(self) -> FloatArray: ...
    @property
    def num_instances(self) -> IntArray: ...
    @property
    def io_ops(self) -> IntArray: ...
    # Hosts that run a member of the request's server group (placed ones included).
    @property
    def group_hosts(self) -> set[str]: ...

    def column(self, name: Column, pos: IntArray) -> npt.NDArray[Any]:
        """A static snapshot column's values at positions ``pos``."""
        ...

    def metric(self, name: str, pos: IntArray) -> FloatArray:
        """A host metric at positions ``pos`` (NaN where not reported)."""
        ...

    def host_names(self, pos: IntArray) -> list[str]: ...
    def host(self, pos: int) -> str: ...
    def record(self, pos: int) -> HostRecord: ...
    def numa(self, pos: int) -> HostNuma | None: ...
    def pci_pools(self, pos: int) -> tuple[PciPool, ...]: ...
    def instance_infos(self, pos: int) -> Mapping[str, InstanceInfo]: ...
    def positions_with_instances(self, uuids: Sequence[str]) -> IntArray: ...
    def member_counts(self) -> IntArray: ...
    def in_group_hosts(self) -> BoolArray: ...

    def aggregate_set(self, pos: int) -> int:
        """The code of the host's set of aggregates."""
        ...

    def aggregate_metadata(self, code: int) -> dict[str, set[str]]: ...
    def aggregate_values(self, code: int, key: str) -> set[str]: ...

    def per_aggregate_set(
        self, compute: Callable[[int], Any], pos: IntArray, dtype: Any = bool
    ) -> npt.NDArray[Any]:
        """``compute(code)`` per position's aggregate set, evaluated once per set."""
        ...

    def per_value(
        self,
        key: Any,
        read: Callable[[HostRecord], Hashable],
        evaluate: Callable[[Any], Any],
        pos: IntArray,
        dtype: Any = bool,
    ) -> npt.NDArray[Any]:
        """``evaluate(read(record))`` per position, evaluated once per distinct value
        (``read`` must depend on static host fields only; cached per snapshot by ``key``)."""
        ...

    def multiplier(self, weigher: HostWeigher) -> float | FloatArray:
        """The weigher's multiplier: one number, or per position (aggregate overrides)."""
        ...


# -- filters -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """A filter's answer with reasons: ``passed`` per position and, per short reason code,
    a mask of the rejected hosts it explains (a host under several codes counts for the
    first; rejected hosts under none count for the filter's ``reason_code``)."""

    passed: BoolArray
    reasons: Mapping[str, BoolArray]

    @classmethod
    def from_codes(cls, codes: npt.NDArray[Any], names: Sequence[str]) -> Verdict:
        """From an integer code per position: 0 passes, ``k`` is rejected for ``names[k]``."""
        passed: BoolArray = codes == 0
        reasons = {names[int(k)]: codes == k for k in np.unique(codes[~passed]).tolist()}
        return cls(passed, reasons)


class HostFilter(abc.ABC):
    """Subclass, implement ``passes``, register under the ``allotment.filters`` entry point
    group with the class name (Nova's filter names are the class names)."""

    # Nova's flag: the answer cannot change between the instances of one request.
    run_filter_once_per_request: ClassVar[bool] = False
    # Nova's RUN_ON_REBUILD: asked during a rebuild check (policy about the image, not
    # usage of the host the instance is already on).
    run_on_rebuild: ClassVar[bool] = False
    # The answer for a host depends only on that host and the request, so after an instance
    # is placed only the chosen host needs asking again. False: ask about every alive host.
    host_local: ClassVar[bool] = True
    # False when ``passes`` loops over hosts in Python; the NoValidHost explanation then
    # asks it only about the hosts that came closest.
    vectorized: ClassVar[bool] = True
    # The reason code of rejected hosts a verdict does not name.
    reason_code: ClassVar[str] = "rejected"
    options_type: ClassVar[type[Any]] = NoOptions

    def __init__(self, options: Any) -> None:
        self.options = options

    @property
    def name(self) -> str:
        return type(self).__name__

    def prepare(self, view: HostView) -> bool:
        """Once per request, before any ``passes``: precompute into ``view.state``; False
        when the request does not use this filter at all (it is then skipped)."""
        return True

    @abc.abstractmethod
    def passes(self, view: HostView, pos: IntArray) -> BoolArray | Verdict:
        """For each candidate position in ``pos``, whether that host passes."""

    def reason(self, view: HostView, pos: int) -> str:
        """Why the host at ``pos`` fails (shown in NoValidHost explanations)."""
        return f"rejected by {self.name}"

    def limits(self, view: HostView, pos: int) -> Mapping[str, Any]:
        """What the chosen host at ``pos`` must enforce (Nova's ``Selection.limits``)."""
        return {}


# -- weighers ----------------------------------------------------------------------------


class WeigherFailed(Exception):
    """A weigher cannot rank the hosts at all (e.g. a required metric is missing); the
    cycle turns it into an explained NoValidHost."""


class HostWeigher(abc.ABC):
    """Subclass, implement ``weigh`` and ``multiplier``, register under the
    ``allotment.weighers`` entry point group with the class name.

    The cycle clamps raw weights to ``minval``/``maxval``, normalizes them to [0, 1] over
    the hosts being weighed, multiplies by the multiplier and sums, as Nova does."""

    minval: ClassVar[float | None] = None
    maxval: ClassVar[float | None] = None
    # Aggregate metadata key overriding the multiplier for hosts in that aggregate (Nova's
    # ``get_weight_multiplier``: the minimum of the values found), None for no override.
    multiplier_key: ClassVar[str | None] = None
    # Nova negates this weigher's multiplier (BuildFailureWeigher).
    negate_multiplier: ClassVar[bool] = False
    # The raw weight of a host changes when an instance is placed on it.
    dynamic: ClassVar[bool] = False
    options_type: ClassVar[type[Any]] = NoOptions

    def __init__(self, options: Any) -> None:
        self.options = options

    @property
    def name(self) -> str:
        return type(self).__name__

    def multiplier(self) -> float:
        """The configured multiplier (before aggregate overrides)."""
        return 1.0

    def prepare(self, view: HostView) -> bool:
        """Once per request: False when every host would get the same weight (the weigher
        is skipped)."""
        return True

    @abc.abstractmethod
    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        """Raw weights of the hosts at candidate positions ``pos`` (higher wins)."""
