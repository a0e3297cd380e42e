"""MetricsWeigher: ``[metrics] weight_setting = ["name=ratio", ...]``; the weight is the
sum of value * ratio. A host missing a metric weighs ``weight_of_unavailable`` — or, with
``[metrics] required`` (the default), the request fails with an explanation, as Nova
raises ComputeHostMetricNotFound; enable MetricsFilter to drop such hosts first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from allotment.config import parse_weight_setting
from allotment.scheduler.framework import (
    FloatArray,
    HostView,
    HostWeigher,
    IntArray,
    WeigherFailed,
    setting,
)


@dataclass(frozen=True, slots=True)
class MetricsOptions:
    multiplier: float = setting("metrics.weight_multiplier")
    weight_setting: list[str] = setting("metrics.weight_setting")
    required: bool = setting("metrics.required")
    weight_of_unavailable: float = setting("metrics.weight_of_unavailable")


class MetricsWeigher(HostWeigher):
    options_type = MetricsOptions
    options: MetricsOptions
    multiplier_key = "metrics_weight_multiplier"

    def multiplier(self) -> float:
        return self.options.multiplier

    def prepare(self, view: HostView) -> bool:
        return bool(self.options.weight_setting)

    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        options = self.options
        multiplier = view.multiplier(self)
        multipliers = multiplier[pos] if isinstance(multiplier, np.ndarray) else multiplier
        total = np.zeros(len(pos))
        unavailable = np.zeros(len(pos), np.bool_)
        for name, ratio in parse_weight_setting(options.weight_setting):
            values = view.metric(name, pos)
            missing = np.isnan(values)
            if options.required and missing.any():
                host = view.host(int(pos[int(np.flatnonzero(missing)[0])]))
                raise WeigherFailed(
                    f"host {host} does not report metric {name!r} and [metrics] required is "
                    "true; enable MetricsFilter or set [metrics] required = false"
                )
            unavailable |= missing & (ratio * multipliers != 0)
            total += np.where(missing, 0.0, values * ratio)
        result: FloatArray = np.where(unavailable, options.weight_of_unavailable, total)
        return result
