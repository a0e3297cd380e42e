"""The remote placement client's keystoneauth1 set-up from Nova's ``[placement]`` option
names: plugins by name, their required options checked at start-up."""

from __future__ import annotations

import pytest

from allotment.client.keystone import KeystoneCredentials
from allotment.config import PlacementClientConfig
from allotment.errors import ConfigError


def test_admin_token_plugin_gives_its_token_and_endpoint() -> None:
    options = PlacementClientConfig(
        auth_type="admin_token", token="static-token", endpoint="http://placement:8778/"
    )
    credentials = KeystoneCredentials(options)
    assert credentials.token() == "static-token"
    assert credentials.endpoint() == "http://placement:8778"


def test_endpoint_override_wins_over_the_catalog() -> None:
    options = PlacementClientConfig(
        auth_type="v3applicationcredential",
        auth_url="http://keystone:5000/v3",
        application_credential_id="ac-id",
        application_credential_secret="ac-secret",
        endpoint_override="http://placement.example:8778",
    )
    assert KeystoneCredentials(options).endpoint() == "http://placement.example:8778"


def test_unknown_plugin_and_missing_options_stop_start_up() -> None:
    with pytest.raises(ConfigError, match="no keystoneauth plugin 'passwrd'"):
        KeystoneCredentials(PlacementClientConfig(auth_type="passwrd"))
    with pytest.raises(ConfigError, match="auth_type password needs auth_url"):
        KeystoneCredentials(PlacementClientConfig(auth_type="password", username="nova"))
