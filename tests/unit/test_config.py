"""Configuration: one typed source, validated with messages that name the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from allotment.cli import main
from allotment.config import load_settings, to_toml
from allotment.errors import ConfigError


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "allotment.toml"
    path.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[database]\nurl = "sqlite:///a"\n')
    env = {"ALLOTMENT_SERVER__PORT": "9100", "ALLOTMENT_FILTER_SCHEDULER__HOST_SUBSET_SIZE": "3"}
    settings = load_settings(path, {"database": {"url": "sqlite:///b"}}, environ=env)
    assert settings.server.port == 9100
    assert settings.server.host == "0.0.0.0"
    assert settings.database_url == "sqlite:///b"
    assert settings.filter_scheduler.host_subset_size == 3


def test_unknown_and_invalid_options_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nprot = 1\nport = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert "server.prot: unknown option" in message
    assert "server.port" in message


def test_show_round_trips_and_redacts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(None, {"database": {"url": "postgresql://u:pw@db/x"}}, environ={})
    text = to_toml(settings)
    path = tmp_path / "round.toml"
    path.write_text(text)
    assert load_settings(path, environ={}) == settings
    assert main(["config", "show", "--database-url", "postgresql://u:pw@db/x"]) == 0
    out = capsys.readouterr().out
    assert "pw" not in out and 'url = "postgresql://u:***@db/x"' in out


def test_missing_config_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "show", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_placement_client_options(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    settings = load_settings(
        None,
        {"placement_client": {"url": "http://placement:8778/", "token_file": str(token_file)}},
        environ={},
    )
    assert settings.placement_client.url == "http://placement:8778"
    assert settings.placement_client.read_token() == "from-file"
    with pytest.raises(ConfigError, match=r"placement_client\.url"):
        load_settings(None, {"placement_client": {"url": "placement:8778"}}, environ={})
    env = {"ALLOTMENT_PLACEMENT_CLIENT__TOKEN": "s3cret"}
    shown = to_toml(load_settings(None, environ=env))
    assert "s3cret" not in shown and 'token = "***"' in shown


def test_capacity_flavors_are_what_allotment_capacity_counts_by_default(tmp_path: Path) -> None:
    """One flavor list for /metrics and the CLI's what-if: each becomes the flavor body the
    scheduler takes, other classes as resources:<CLASS> extra specs."""
    from allotment.scheduler.request import Flavor

    conf = tmp_path / "allotment.toml"
    conf.write_text(
        "[metrics]\ncapacity_flavors = [\n"
        '  {name = "g1", vcpus = 8, memory_mb = 32768, disk_gb = 80, resources = {VGPU = 1}},\n'
        "]\n"
    )
    (flavor,) = load_settings(conf).metrics.capacity_flavors
    body = Flavor.model_validate(flavor.as_flavor())
    assert (body.name, body.vcpus, body.memory_mb, body.root_gb) == ("g1", 8, 32768, 80)
    assert body.extra_specs == {"resources:VGPU": "1"}
