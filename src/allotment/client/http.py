"""An HTTP transport for OpenStack-style services: token header, microversion header,
timeouts, and retries with exponential backoff and jitter.

Retries only happen where a repeat cannot do harm: connection failures before the request
was sent, and, for idempotent methods only, 502/503/504 answers and transport failures
after sending. A POST whose answer was lost (a timeout, a reset connection) is never sent
again: it may have committed (a claim would come back as a consumer-generation 409), so
the caller hears that its outcome is unknown. Everything else is returned to the caller,
who knows what a 409 means for its request. When the service stays unreachable the
caller gets ``ServiceUnavailable`` naming the URL (never the token).

With ``credentials`` (a keystoneauth1 session, see ``client/keystone.py``) every request
carries the session's current token (renewed before it expires), and a 401 invalidates it
and sends the request once more with a fresh one.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any, Protocol

import httpx

from allotment import __version__, errors
from allotment.log import global_request_id

LOG = logging.getLogger(__name__)
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({502, 503, 504})


class Credentials(Protocol):
    """Where a token comes from, and how to drop one the service refused."""

    def token(self) -> str: ...

    def invalidate(self) -> None: ...


class HttpTransport:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        credentials: Credentials | None = None,
        service_type: str = "placement",
        microversion: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.service_type = service_type
        self.microversion = microversion
        self.retries = retries
        self.backoff = backoff
        self.credentials = credentials
        headers = {"accept": "application/json", "user-agent": f"allotment/{__version__}"}
        if token:
            headers["x-auth-token"] = token
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        microversion: str | None = None,
        shown_as: str | None = None,
    ) -> httpx.Response:
        """Send one request (retrying transient failures); return the final response.

        ``shown_as`` replaces ``path`` in log lines and errors (for paths that name
        something only debug logs may show, such as an instance uuid)."""
        shown = shown_as or path
        headers = {}
        version = microversion or self.microversion
        if version:
            headers["openstack-api-version"] = f"{self.service_type} {version}"
        request_id = global_request_id()
        if request_id != "-":
            # The operation's id (the caller's global request id, else ours): the remote
            # service logs it as its global request id, next to its own.
            headers["x-openstack-request-id"] = request_id
        attempt = 0
        reauthenticated = False
        while True:
            if self.credentials is not None:
                headers["x-auth-token"] = self.credentials.token()
            try:
                response = self._client.request(
                    method, path, json=json, params=params, headers=headers
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failure: str = f"cannot connect: {exc}"
            except httpx.HTTPError as exc:
                # The request may have reached the service: only an idempotent one is sent again.
                timed_out = isinstance(exc, httpx.TimeoutException)
                if method not in IDEMPOTENT:
                    what = "in time" if timed_out else "(the connection failed)"
                    raise errors.ServiceUnavailable(
                        f"{self.service_type} at {self.base_url} did not answer {method} {shown} "
                        f"{what} ({exc}); the request may or may not have taken effect"
                    ) from None
                failure = f"timed out: {exc}" if timed_out else f"transport error: {exc}"
            else:
                if response.status_code == 401 and self.credentials and not reauthenticated:
                    # Expired or revoked under us: a 401 changed nothing, so any method
                    # may be sent again, once, with a new token.
                    LOG.info("%s refused our token; authenticating again", self.service_type)
                    self.credentials.invalidate()
                    reauthenticated = True
                    continue
                if response.status_code not in RETRY_STATUSES or method not in IDEMPOTENT:
                    return response
                failure = f"answered {response.status_code}"
            if attempt >= self.retries:
                raise errors.ServiceUnavailable(
                    f"{self.service_type} at {self.base_url} is unavailable ({method} {shown} "
                    f"{failure}; {attempt + 1} attempts)"
                )
            delay = self.backoff * (2**attempt) * random.uniform(0.5, 1.5)
            LOG.warning(
                "%s %s %s to %s %s; retrying in %.2fs",
                self.service_type,
                method,
                shown,
                self.base_url,
                failure,
                delay,
            )
            time.sleep(delay)
            attempt += 1


def error_code(response: httpx.Response) -> str | None:
    """The ``errors[0].code`` of an OpenStack error body, if there is one."""
    try:
        return str(response.json()["errors"][0].get("code"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def error_detail(response: httpx.Response) -> str:
    try:
        return str(response.json()["errors"][0].get("detail", "")).strip()
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return response.text[:500]


class ClientTransport:
    """The ``request`` of ``HttpTransport`` over an ``httpx.Client`` someone else owns
    (a Starlette ``TestClient``, a client bound to a live server): the microversion header
    and fixed headers such as a token, no retries; ``prefix`` goes before every path (e.g.
    ``/scheduler/v1`` on a client bound to a server's root). Lets tests drive
    ``ReportClient``."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        headers: dict[str, str] | None = None,
        service_type: str = "placement",
        prefix: str = "",
    ) -> None:
        self.client = client
        self.headers = dict(headers or {})
        self.service_type = service_type
        self.prefix = prefix.rstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        microversion: str | None = None,
    ) -> httpx.Response:
        headers = dict(self.headers)
        if microversion:
            headers["openstack-api-version"] = f"{self.service_type} {microversion}"
        return self.client.request(
            method, self.prefix + path, json=json, params=params, headers=headers
        )
