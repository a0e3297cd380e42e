"""ImagePropertiesWeigher: prefer (positive multiplier) or avoid (negative) hosts whose
instances booted from images with the same properties as the requested image. Off by
default (multiplier 0.0). ``image_props_weight_setting = ["prop=ratio", ...]`` weighs
properties individually; unlisted properties then count for nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from allotment.config import parse_weight_setting
from allotment.scheduler.snapshot import FloatArray, IntArray
from allotment.scheduler.weighers.base import HostWeigher

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


class ImagePropertiesWeigher(HostWeigher):
    multiplier_key = "image_props_weight_multiplier"

    def multiplier(self) -> float:
        return self.settings.filter_scheduler.image_props_weight_multiplier

    def applies(self, cycle: Cycle) -> bool:
        # Nova checks the configured multiplier, before any aggregate override.
        return self.multiplier() != 0.0 and bool(cycle.spec.image_properties)

    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        setting = dict(
            parse_weight_setting(self.settings.filter_scheduler.image_props_weight_setting)
        )
        requested = {(k, str(v)) for k, v in cycle.spec.image_properties.items()}
        weights = np.zeros(len(pos))
        for index, p in enumerate(pos.tolist()):
            existing: list[tuple[str, str]] = []
            for info in cycle.instance_infos(p).values():
                existing.extend((k, str(v)) for k, v in info.image_properties.items())
            weight = 0.0
            for prop, value in requested & set(existing):
                ratio = setting.get(prop, 0.0) if setting else 1.0
                weight += ratio * existing.count((prop, value))
            weights[index] = weight
        return weights
