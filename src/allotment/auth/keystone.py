"""Keystone tokens, validated by keystonemiddleware's ``auth_token`` (as every OpenStack
service validates them).

``[keystone_authtoken]`` goes to ``auth_token`` unchanged. The middleware runs with
``delay_auth_decision``: we hand it only the caller's token headers, read back the identity
headers it sets for a valid token (``X-Identity-Status: Confirmed``, ``X-User-Id``,
``X-Project-Id``, ``X-Roles``, ``OpenStack-System-Scope``, the domain ids) and turn them into
a context. Nothing else the caller sent reaches it, so identity headers cannot be spoofed.
Validation may call Keystone: ``blocking`` tells the context middleware to run it off the
event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from keystonemiddleware import auth_token  # type: ignore[import-untyped]
from oslo_config import cfg

from allotment.auth.base import TOKEN_HEADER, context_from_identity_headers
from allotment.context import RequestContext
from allotment.errors import ConfigError

LOG = logging.getLogger(__name__)
SERVICE_TOKEN_HEADER = "x-service-token"
StartResponse = Callable[..., Any]


def _identity(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI application behind ``auth_token``: it only has to answer."""
    start_response("204 No Content", [])
    return []


class KeystoneAuth:
    name = "keystone"
    blocking = True

    def __init__(self, options: Mapping[str, Any]) -> None:
        if not options.get("auth_url") and not options.get("www_authenticate_uri"):
            raise ConfigError(
                "[auth] strategy = keystone needs [keystone_authtoken] options "
                "(at least www_authenticate_uri, auth_url, auth_type and credentials)"
            )
        conf = cfg.ConfigOpts()
        # A private option set: auth_token reads [keystone_authtoken] from our TOML only.
        conf([], project="allotment", default_config_files=[], default_config_dirs=[])
        # auth_token reads paste-style string values (and converts them itself).
        values = {k: ",".join(v) if isinstance(v, list) else str(v) for k, v in options.items()}
        values["delay_auth_decision"] = "true"
        self._middleware = auth_token.AuthProtocol(
            _identity, {**values, "oslo_config_config": conf}
        )

    def authenticate(self, headers: Mapping[str, str], request_id: str) -> RequestContext | None:
        token = headers.get(TOKEN_HEADER)
        if not token:
            return None
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "SERVER_NAME": "allotment",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
            "HTTP_X_AUTH_TOKEN": token,
        }
        if headers.get(SERVICE_TOKEN_HEADER):
            environ["HTTP_X_SERVICE_TOKEN"] = headers[SERVICE_TOKEN_HEADER]
        self._middleware(environ, lambda *_: None)
        if environ.get("HTTP_X_IDENTITY_STATUS") != "Confirmed":
            return None
        identity = {
            key[5:].lower().replace("_", "-"): value
            for key, value in environ.items()
            if key.startswith("HTTP_") and isinstance(value, str)
        }
        return context_from_identity_headers(identity, request_id)
