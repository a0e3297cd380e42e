"""keystoneauth1 for the remote placement client: an auth plugin, a session and an adapter
built from Nova's ``[placement]`` option names (our ``[placement_client]`` section).

The adapter finds placement in the service catalog (``service_type``, ``valid_interfaces``,
``region_name``) unless ``endpoint_override`` (or ``url``) names it, and hands out the
session's token, renewed before it expires; ``HttpTransport`` sends it and, on a 401,
invalidates it and tries once more.
"""

from __future__ import annotations

from typing import Any

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading
from keystoneauth1 import session as ks_session

from allotment.config import PlacementClientConfig
from allotment.errors import ConfigError, ServiceUnavailable


class KeystoneCredentials:
    """Tokens and the placement endpoint, from a keystoneauth1 session and adapter."""

    def __init__(self, options: PlacementClientConfig) -> None:
        name = options.auth_type or ""
        try:
            loader: Any = loading.get_plugin_loader(name)
        except ks_exceptions.NoMatchingPlugin:
            raise ConfigError(
                f"placement_client.auth_type: no keystoneauth plugin {name!r}"
            ) from None
        values = options.model_dump()
        given: dict[str, Any] = {}
        for opt in loader.get_options():
            value = values.get(opt.dest)
            if opt.dest == "token" and value is None:
                value = options.read_token()
            if value is not None:
                given[opt.dest] = value
        try:
            plugin = loader.load_from_options(**given)
        except ks_exceptions.MissingRequiredOptions as exc:
            missing = ", ".join(o.dest for o in exc.options)
            raise ConfigError(f"placement_client: auth_type {name} needs {missing}") from None
        verify: bool | str = not options.insecure
        if options.cafile is not None and verify:
            verify = str(options.cafile)
        self.session = ks_session.Session(auth=plugin, verify=verify, timeout=options.timeout)
        self.adapter = ks_adapter.Adapter(
            self.session,
            service_type=options.service_type,
            service_name=options.service_name,
            interface=options.valid_interfaces,
            region_name=options.region_name,
            endpoint_override=options.endpoint_override or options.url or None,
        )

    def token(self) -> str:
        try:
            token = self.adapter.get_token()
        except ks_exceptions.ClientException as exc:
            raise ServiceUnavailable(f"cannot authenticate to Keystone: {exc}") from None
        if not token:
            raise ServiceUnavailable("Keystone gave no token for the placement client")
        return str(token)

    def invalidate(self) -> None:
        self.adapter.invalidate()

    def endpoint(self) -> str:
        """Placement's URL: the override, else the catalog's entry for this interface/region."""
        try:
            url = self.adapter.get_endpoint()
        except ks_exceptions.ClientException as exc:
            raise ServiceUnavailable(
                f"cannot find placement in the service catalog: {exc}"
            ) from None
        if not url:
            raise ServiceUnavailable("the service catalog has no placement endpoint")
        return str(url).rstrip("/")
