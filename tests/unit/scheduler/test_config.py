"""The scheduler's configuration sections: Nova's option names and defaults, validated
at start-up."""

from __future__ import annotations

import pytest

from allotment.config import load_settings, parse_weight_setting
from allotment.errors import ConfigError


def test_nova_defaults() -> None:
    settings = load_settings(None, {}, environ={})
    assert settings.max_attempts == 3
    assert settings.scheduler.max_placement_results == 1000
    assert settings.scheduler.query_placement_for_availability_zone is True
    assert settings.scheduler.limit_tenants_to_placement_aggregate is False
    assert settings.scheduler.service_down_time == 60
    options = settings.filter_scheduler
    assert options.enabled_filters[0] == "ComputeFilter"
    assert options.weight_classes == ["all"]
    assert (options.host_subset_size, options.max_io_ops_per_host) == (1, 8)
    assert options.max_instances_per_host == 50
    assert options.io_ops_weight_multiplier == -1.0
    assert options.build_failure_weight_multiplier == 1000000.0
    assert settings.metrics.required is True
    assert settings.metrics.weight_of_unavailable == -10000.0


def test_weight_setting_pairs() -> None:
    assert parse_weight_setting(["cpu=-1.0", " mem = 2"]) == [("cpu", -1.0), ("mem", 2.0)]


def test_max_attempts_in_either_section() -> None:
    assert load_settings(None, {"scheduler": {"max_attempts": 5}}, environ={}).max_attempts == 5
    both = {"scheduler": {"max_attempts": 5}, "filter_scheduler": {"max_attempts": 2}}
    assert load_settings(None, both, environ={}).max_attempts == 2


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"metrics": {"weight_setting": ["cpu"]}}, "not of the form name=number"),
        ({"filter_scheduler": {"image_props_weight_setting": ["a=b"]}}, "name=number"),
        ({"filter_scheduler": {"host_subset_size": 0}}, "host_subset_size"),
        ({"pci": {"alias": [{"name": "a"}, {"name": "a"}]}}, "duplicate PCI alias names: a"),
        ({"filter_scheduler": {"no_such_option": 1}}, "unknown option"),
    ],
)
def test_bad_options_stop_start_up(sections: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, sections, environ={})
