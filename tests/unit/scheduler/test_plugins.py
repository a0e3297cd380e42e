"""Configuration of the pipeline: option validation and the plugin allow-list."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from allotment.config import load_settings
from allotment.errors import ConfigError
from allotment.scheduler.pipeline import Pipeline


def pipeline(**sections: dict[str, object]) -> Pipeline:
    return Pipeline.from_settings(load_settings(None, sections, environ={}))


def test_nova_defaults() -> None:
    built = pipeline()
    assert [f.name for f in built.filters] == [
        "ComputeFilter",
        "ComputeCapabilitiesFilter",
        "ImagePropertiesFilter",
        "ServerGroupAntiAffinityFilter",
        "ServerGroupAffinityFilter",
    ]
    assert len(built.weighers) == 12


def test_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "allotment.toml"
    path.write_text(
        textwrap.dedent("""
        [filter_scheduler]
        enabled_filters = ["ComputeFilter", "NUMATopologyFilter"]
        weight_classes = ["RAMWeigher"]
        ram_weight_multiplier = -1.0

        [metrics]
        weight_setting = ["cpu.percent=-1.0"]

        [[pci.alias]]
        name = "gpu"
        vendor_id = "10de"
    """)
    )
    settings = load_settings(path, environ={})
    built = Pipeline.from_settings(settings)
    assert [f.name for f in built.filters] == ["ComputeFilter", "NUMATopologyFilter"]
    assert [w.name for w in built.weighers] == ["RAMWeigher"]
    assert settings.pci.alias[0].vendor_id == "10de"


def test_unknown_filter_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as caught:
        pipeline(filter_scheduler={"enabled_filters": ["ComputeFilter", "RamFilter"]})
    message = str(caught.value)
    assert "[filter_scheduler] enabled_filters: cannot load RamFilter" in message
    assert "not installed" in message
    assert "valid names:" in message and "NUMATopologyFilter" in message


def test_unknown_weigher_and_request_filter() -> None:
    with pytest.raises(ConfigError, match="weight_classes: cannot load Nope"):
        pipeline(filter_scheduler={"weight_classes": ["Nope"]})
    with pytest.raises(ConfigError, match="request_filters: cannot load nope"):
        pipeline(scheduler={"request_filters": ["nope"]})


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution (not ours) registering a filter and a non-filter."""
    (tmp_path / "extra_filters.py").write_text(
        textwrap.dedent("""
        import numpy as np
        from allotment.scheduler.filters import HostFilter

        class EvenHostsFilter(HostFilter):
            def passes(self, cycle, pos):
                return pos % 2 == 0

        class NotAFilter:
            pass
    """)
    )
    dist = tmp_path / "extra_filters-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-filters\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[allotment.filters]\n"
        "EvenHostsFilter = extra_filters:EvenHostsFilter\n"
        "NotAFilter = extra_filters:NotAFilter\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.usefixtures("third_party")
def test_third_party_plugin_needs_the_allow_list() -> None:
    with pytest.raises(ConfigError, match=r"installed but not allowed.*EvenHostsFilter"):
        pipeline(filter_scheduler={"enabled_filters": ["EvenHostsFilter"]})
    built = pipeline(
        filter_scheduler={"enabled_filters": ["EvenHostsFilter"]},
        plugins={"allowed": ["EvenHostsFilter"]},
    )
    assert [f.name for f in built.filters] == ["EvenHostsFilter"]


@pytest.mark.usefixtures("third_party")
def test_plugin_of_the_wrong_kind() -> None:
    with pytest.raises(ConfigError, match="is not a HostFilter subclass"):
        pipeline(
            filter_scheduler={"enabled_filters": ["NotAFilter"]},
            plugins={"allowed": ["NotAFilter"]},
        )
