"""The few Neutron calls Nova's routed-networks request filter makes, with the
credentials Nova uses: nova.conf's ``[neutron]`` section read by keystoneauth1 (auth
plugin, session and adapter options by Nova's names; the service catalog's ``network``
endpoint unless ``endpoint_override`` names one).

The calls are Nova 34's (``nova/network/neutron.py``): ``GET /v2.0/extensions`` (is
``segment`` there? remembered for ``[neutron] extension_sync_interval`` seconds),
``GET /v2.0/ports/{id}``, ``GET /v2.0/subnets?network_id=...&fields=segment_id`` and
``GET /v2.0/subnets/{id}``. Every call uses the service credentials (Nova shows a port
with the user's token; the scheduler has none to give), and carries the request's
global request id.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from allotment import errors
from allotment.context import RequestContext

GROUP = "neutron"
SEGMENT_EXTENSION = "segment"


def register_options(conf: cfg.ConfigOpts) -> None:
    """nova.conf's ``[neutron]`` options as Nova registers them (``nova.conf.neutron``):
    keystoneauth1's session, auth and adapter options, service type ``network``."""
    ks_loading.register_session_conf_options(conf, GROUP)
    ks_loading.register_auth_conf_options(conf, GROUP)
    conf.register_opts(ks_loading.get_adapter_conf_options(include_deprecated=False), GROUP)
    conf.set_default("service_type", "network", group=GROUP)
    conf.set_default("valid_interfaces", ["internal", "public"], group=GROUP)
    conf.register_opts(
        [
            cfg.IntOpt("extension_sync_interval", default=600, min=0),
            cfg.IntOpt("http_retries", default=3, min=0),
        ],
        GROUP,
    )


class NeutronClient:
    """Neutron's API through a keystoneauth1 adapter made from nova.conf."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        register_options(conf)
        options = conf[GROUP]
        try:
            auth = ks_loading.load_auth_from_conf_options(conf, GROUP)
        except (ks_exceptions.ClientException, cfg.Error) as exc:
            raise errors.ConfigError(f"nova.conf [neutron]: {exc}") from None
        if auth is None:
            raise errors.ConfigError(
                "nova.conf [neutron] has no auth_type: the routed-networks request filter "
                "reaches Neutron with the credentials Nova uses (auth_type, auth_url, ...)"
            )
        session = ks_loading.load_session_from_conf_options(conf, GROUP, auth=auth)
        try:
            self.adapter = ks_loading.load_adapter_from_conf_options(
                conf, GROUP, session=session, auth=auth, connect_retries=options.http_retries
            )
        except TypeError as exc:  # keystoneauth1's word for conflicting adapter options
            raise errors.ConfigError(f"nova.conf [neutron]: {exc}") from None
        self.extension_sync_interval = float(options.extension_sync_interval)
        self._lock = threading.Lock()
        self._extensions: frozenset[str] = frozenset()
        self._extensions_read: float | None = None

    def _get(self, ctx: RequestContext, path: str, **params: str) -> tuple[int, Any]:
        """(status, JSON body) of ``GET /v2.0{path}``; NeutronUnavailable when Neutron (or
        Keystone) cannot be reached or refuses our credentials."""
        try:
            response = self.adapter.get(
                f"/v2.0{path}",
                params=params or None,
                raise_exc=False,
                global_request_id=ctx.global_request_id or ctx.request_id,
            )
        except ks_exceptions.ClientException as exc:
            raise errors.NeutronUnavailable(f"Neutron cannot be reached: {exc}") from None
        if response.status_code in (401, 403) or response.status_code >= 500:
            raise errors.NeutronUnavailable(
                f"Neutron answered GET /v2.0{path} with HTTP {response.status_code}"
            )
        try:
            body = response.json() if response.status_code == 200 else None
        except ValueError:
            raise errors.NeutronUnavailable(
                f"Neutron answered GET /v2.0{path} with a body that is not JSON"
            ) from None
        return response.status_code, body

    def has_segment_extension(self, ctx: RequestContext) -> bool:
        """Whether Neutron has the ``segment`` extension (re-read every
        ``extension_sync_interval`` seconds, as Nova does)."""
        with self._lock:
            read = self._extensions_read
            if read is None or time.monotonic() - read >= self.extension_sync_interval:
                status, body = self._get(ctx, "/extensions")
                if status != 200:
                    raise errors.NeutronUnavailable(
                        f"Neutron answered GET /v2.0/extensions with HTTP {status}"
                    )
                self._extensions = frozenset(e["alias"] for e in body["extensions"])
                self._extensions_read = time.monotonic()
            return SEGMENT_EXTENSION in self._extensions

    def show_port(self, ctx: RequestContext, port_id: str) -> dict[str, Any]:
        status, body = self._get(ctx, f"/ports/{port_id}")
        if status == 404:
            raise errors.NeutronRefused(f"Port {port_id} could not be found in Neutron")
        if status != 200:
            raise errors.NeutronRefused(f"Failed to access port {port_id}: HTTP {status}")
        port: dict[str, Any] = body["port"]
        return port

    def segment_ids_for_network(self, ctx: RequestContext, network_id: str) -> list[str]:
        """The segments of the network's subnets (none without the extension, or for a
        network that is not routed)."""
        if not self.has_segment_extension(ctx):
            return []
        status, body = self._get(ctx, "/subnets", network_id=network_id, fields="segment_id")
        if status != 200:
            raise errors.NeutronRefused(f"Failed to get segment IDs for network {network_id}")
        return [s["segment_id"] for s in body["subnets"] if s.get("segment_id") is not None]

    def segment_id_for_subnet(self, ctx: RequestContext, subnet_id: str) -> str | None:
        """The subnet's segment (None without the extension, or when it has none)."""
        if not self.has_segment_extension(ctx):
            return None
        status, body = self._get(ctx, f"/subnets/{subnet_id}")
        if status != 200:
            raise errors.NeutronRefused(f"Subnet {subnet_id} not found")
        segment: str | None = body["subnet"].get("segment_id")
        return segment
