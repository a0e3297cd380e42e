"""ImagePropertiesWeigher: prefer (positive multiplier) or avoid (negative) hosts whose
instances booted from images with the same properties as the requested image. Off by
default (multiplier 0.0). ``image_props_weight_setting = ["prop=ratio", ...]`` weighs
properties individually; unlisted properties then count for nothing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from allotment.config import parse_weight_setting
from allotment.scheduler.framework import FloatArray, HostView, HostWeigher, IntArray, setting


@dataclass(frozen=True, slots=True)
class ImagePropertiesOptions:
    multiplier: float = setting("filter_scheduler.image_props_weight_multiplier")
    weight_setting: list[str] = setting("filter_scheduler.image_props_weight_setting")


class ImagePropertiesWeigher(HostWeigher):
    options_type = ImagePropertiesOptions
    options: ImagePropertiesOptions
    multiplier_key = "image_props_weight_multiplier"

    def multiplier(self) -> float:
        return self.options.multiplier

    def prepare(self, view: HostView) -> bool:
        # Nova checks the configured multiplier, before any aggregate override.
        return self.multiplier() != 0.0 and bool(view.spec.image_properties)

    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        ratios = dict(parse_weight_setting(self.options.weight_setting))
        requested = {(k, str(v)) for k, v in view.spec.image_properties.items()}
        weights = np.zeros(len(pos))
        for index, p in enumerate(pos.tolist()):
            existing: list[tuple[str, str]] = []
            for info in view.instance_infos(p).values():
                existing.extend((k, str(v)) for k, v in info.image_properties.items())
            weight = 0.0
            for prop, value in requested & set(existing):
                ratio = ratios.get(prop, 0.0) if ratios else 1.0
                weight += ratio * existing.count((prop, value))
            weights[index] = weight
        return weights
