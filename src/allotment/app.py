"""The application factory: builds the services from settings and assembles both HTTP APIs.

``/`` and below: the Placement API. ``/scheduler/v1`` (configurable): the scheduler API.
``/healthz``, ``/readyz`` and ``/metrics``: the operator's (``observe.py``).
Every request is observed (metrics, access line), then passes the context middleware
(request id, authentication).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType
from typing import Any, Protocol

from starlette.datastructures import State
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from allotment import errors, metrics, openapi, process
from allotment.auth import conformance, policy
from allotment.auth.base import Authenticator
from allotment.auth.middleware import PUBLIC_PATHS, ContextMiddleware
from allotment.auth.noauth import NoAuth
from allotment.auth.tokens import TokenAuth, TokenStore
from allotment.client.http import HttpTransport
from allotment.client.placement_http import MICROVERSION, HttpPlacementClient
from allotment.client.placement_local import LocalPlacementClient
from allotment.config import Settings
from allotment.context import RequestContext, new_request_id
from allotment.cors import CorsMiddleware
from allotment.db import migrate
from allotment.db.database import Database, utcnow
from allotment.health import Health
from allotment.limits import LimitsMiddleware
from allotment.metrics import Metrics
from allotment.observe import Endpoints, ObserveMiddleware
from allotment.periodic import PeriodicTask
from allotment.placement.api.middleware import MicroversionMiddleware
from allotment.placement.api.routes import build_router
from allotment.placement.index.sync import CapacityIndex
from allotment.placement.service import PlacementService
from allotment.placement.store import changes
from allotment.placement.store.catalog import Catalog
from allotment.scheduler.api import SchedulerAPI
from allotment.scheduler.host_manager import HostManager
from allotment.scheduler.manager import SchedulerManager
from allotment.scheduler.pipeline import Pipeline
from allotment.scheduler.placement import PlacementClient
from allotment.web import JSON, dumps, error_response, set_route

LOG = logging.getLogger(__name__)
OPENAPI_PATH = "/openapi.json"


class Background(Protocol):
    """Something the process runs beside the requests, started and stopped with it."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


class HostCacheTasks:
    """The host cache's life in the process: loaded at start-up; its sync round (flush
    heartbeats, catch up with other processes) and its slow round (discovery, aggregate
    resync, change-log pruning) as PeriodicTasks; rebuilt on SIGHUP (when started on the
    main thread); flushed at shutdown."""

    def __init__(
        self,
        host_manager: HostManager,
        interval: float,
        *,
        sync_interval: float = 0.5,
        change_log_retention_s: float | None = None,
    ) -> None:
        self.host_manager = host_manager
        self.task = PeriodicTask(
            "host-cache", interval, lambda: host_manager.periodic(change_log_retention_s)
        )
        self.sync_task = PeriodicTask("host-cache-sync", sync_interval, host_manager.sync)
        self._previous_sighup: Any = None
        # SIGHUPs coalesce: one rebuild at a time, and one more after the last signal.
        self._reset_wanted = threading.Event()
        self._stopping = False
        self._resetter: threading.Thread | None = None

    def start(self) -> None:
        self.host_manager.load()
        self.task.start()
        self.sync_task.start()
        if threading.current_thread() is threading.main_thread():
            self._stopping = False
            self._resetter = threading.Thread(
                target=self._resets, name="host-cache-reset", daemon=True
            )
            self._resetter.start()
            self._previous_sighup = signal.signal(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self, signum: int, frame: FrameType | None) -> None:
        # Rebuild off the signal handler; requests keep using the old snapshot meanwhile.
        self._reset_wanted.set()

    def _resets(self) -> None:
        while True:
            self._reset_wanted.wait()
            if self._stopping:
                return
            # Cleared before the rebuild reads: a signal during it asks for one more.
            self._reset_wanted.clear()
            try:
                self.host_manager.reset(RequestContext.internal())
            except Exception:
                LOG.exception("host cache rebuild on SIGHUP failed; the old cache stays")

    def stop(self) -> None:
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        if self._resetter is not None:
            self._stopping = True
            self._reset_wanted.set()
            self._resetter.join(timeout=10)
            self._resetter = None
        self.sync_task.stop()
        self.task.stop()
        self.host_manager.close()


@dataclass
class Services:
    """Everything one process runs, built once from settings."""

    settings: Settings
    db: Database
    placement: PlacementService
    authenticator: Authenticator
    tokens: TokenStore | None = None
    # The scheduler's host state cache, its filter/weigher pipeline, how it reaches
    # placement, and select_destinations itself.
    host_manager: HostManager | None = None
    pipeline: Pipeline | None = None
    placement_client: PlacementClient | None = None
    scheduler: SchedulerManager | None = None
    background: list[Background] = field(default_factory=list)
    health: Health = field(default_factory=Health)
    metrics: Metrics = field(default_factory=Metrics)

    def start(self) -> None:
        for task in self.background:
            task.start()

    def stop(self) -> None:
        for task in reversed(self.background):
            task.stop()
        if isinstance(self.placement_client, HttpPlacementClient):
            self.placement_client.close()
        self.db.dispose()
        # A worker that ends cleanly takes its live gauges out of the sums itself (the
        # supervisor does it for one that died: metrics.worker_exited).
        metrics.worker_exited(os.getpid())


def build_placement_client(settings: Settings, placement: PlacementService) -> PlacementClient:
    """The embedded placement, in-process; or the one ``[placement_client] url`` names."""
    options = settings.placement_client
    if not options.url and not options.auth_type:
        return LocalPlacementClient(placement)
    credentials = None
    url = options.url
    if options.auth_type:
        from allotment.client.keystone import KeystoneCredentials

        credentials = KeystoneCredentials(options)
        url = credentials.endpoint()
    transport = HttpTransport(
        url,
        token=None if credentials else options.read_token(),
        credentials=credentials,
        microversion=MICROVERSION,
        timeout=options.timeout,
        retries=options.retries,
        backoff=options.backoff,
    )
    return HttpPlacementClient(transport)


def build_services(settings: Settings) -> Services:
    db = Database(
        settings.database_url,
        pool_size=settings.database.pool_size,
        sqlite_synchronous=settings.database.sqlite_synchronous,
        write_retries=settings.database.write_retries,
        echo=settings.database.echo,
    )
    migrate.prepare(db)
    catalog = Catalog(db)
    placement = PlacementService(
        db,
        catalog,
        index=CapacityIndex(db, catalog),
        randomize_candidates=settings.placement.randomize_allocation_candidates,
        max_candidates=settings.limits.max_allocation_candidates,
        all_permutations=settings.placement.allocation_candidate_permutations == "all",
    )
    placement.catalog.sync_standard()
    tokens: TokenStore | None = None
    authenticator: Authenticator
    health = Health()
    observed = Metrics(settings)
    background: list[Background] = [
        prune_change_log_task(db, settings.placement.change_log_retention_s),
        # Builds the capacity index at start-up, then follows other processes' writes.
        PeriodicTask(
            "capacity-index",
            settings.placement.index_poll_interval,
            health.watching_database(placement.index.catch_up),
            run_first=True,
        ),
    ]
    policy_options = settings.oslo_policy
    strategy = settings.auth_strategy
    if strategy == "noauth":
        authenticator = NoAuth()
        policy_options = conformance.fixture_policy(
            policy_options, os.environ, settings.server.state_dir
        )
    elif strategy == "keystone":
        # Imported here: keystonemiddleware brings WebOb and friends, needed only for this.
        from allotment.auth.keystone import KeystoneAuth

        authenticator = KeystoneAuth(settings.keystone_authtoken)
    else:
        tokens = TokenStore(db)
        authenticator = TokenAuth(tokens)
    # A bad policy file stops start-up here, before anything is served.
    policy.configure(
        policy.PolicyEngine(
            enforce_scope=policy_options.enforce_scope,
            enforce_new_defaults=policy_options.enforce_new_defaults,
            policy_file=policy_options.policy_file,
        )
    )
    client = build_placement_client(settings, placement)
    # A bad filter or weigher name (or option) stops start-up here, before anything runs.
    pipeline = Pipeline.from_settings(settings, client)
    host_manager = HostManager(
        db,
        settings,
        mirror=client,
        # Listing every provider each round is cheap in-process, not against a remote
        # Placement serving thousands of them: discovery is for the embedded one only.
        providers=(
            (lambda: client.root_providers(RequestContext.internal()))
            if isinstance(client, LocalPlacementClient)
            else None
        ),
    )
    scheduler = SchedulerManager(settings, host_manager, pipeline, client, metrics=observed)
    # Every process says how far behind it is, so a scrape answered by any worker shows
    # the worst of them.
    background.append(
        PeriodicTask(
            "metrics-lag",
            1.0,
            lambda: observed.record_lag(placement.index, host_manager),
        )
    )
    background.append(
        HostCacheTasks(
            host_manager,
            settings.scheduler.periodic_interval,
            # Flush here, then read there: a change is seen elsewhere within the delay.
            sync_interval=settings.scheduler.host_state_sync_delay / 2,
            change_log_retention_s=settings.placement.change_log_retention_s,
        )
    )
    if settings.nova.config_file is not None:
        # Imported only when asked for: oslo.messaging is not free to import, and it
        # pulls in eventlet, which warns on import although nothing here uses it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from allotment.scheduler.nova.rpc import NovaRpcServer

        # Started after the host cache, stopped before it.
        rpc_server = NovaRpcServer(settings, scheduler, host_manager)
        if settings.nova.read_databases:
            from allotment.scheduler.nova.feeder import NovaFeederTask, database_urls

            if database_urls(rpc_server.conf)[0]:
                # Its first round runs before the RPC server takes calls.
                background.append(NovaFeederTask(settings, host_manager, rpc_server.conf))
            else:
                LOG.info(
                    "nova.conf names no [api_database] connection: host state comes from "
                    "host reports only"
                )
        background.append(rpc_server)
    return Services(
        settings=settings,
        db=db,
        placement=placement,
        authenticator=authenticator,
        tokens=tokens,
        host_manager=host_manager,
        pipeline=pipeline,
        placement_client=client,
        scheduler=scheduler,
        background=background,
        health=health,
        metrics=observed,
    )


def prune_change_log_task(db: Database, retention_s: float) -> PeriodicTask:
    """Forget change-log rows older than the retention (any process may do it; it is idempotent)."""

    def prune() -> None:
        cutoff = utcnow() - timedelta(seconds=retention_s)
        with db.write() as conn:
            removed = changes.prune(conn, cutoff)
        if removed:
            LOG.debug("pruned %d change-log rows older than %s", removed, cutoff)

    return PeriodicTask("prune-change-log", max(60.0, retention_s / 10), prune)


class ErrorMiddleware:
    """A dependency that is down becomes a JSON 503 naming it (authentication included);
    unexpected exceptions a logged, JSON-shaped 500 instead of a bare text page."""

    def __init__(self, app: ASGIApp, health: Health) -> None:
        self.app = app
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if scope["type"] != "http" or started:
                raise
            ctx = scope.get("state", {}).get("context")
            request_id = ctx.request_id if ctx else new_request_id()
            unavailable = self.health.as_error(exc)
            if unavailable is not None:
                response = error_response(unavailable, request_id=request_id, with_code=True)
                response.headers["retry-after"] = "1"
                await response(scope, receive, send)
                return
            LOG.error(
                "unhandled error on %s %s\n%s",
                scope["method"],
                scope["path"],
                traceback.format_exc(),
            )
            response = error_response(
                errors.AllotmentError("An unexpected error occurred; it has been logged."),
                request_id=request_id,
                with_code=True,
            )
            response.status_code = 500
            await response(scope, receive, send)


class AllotmentApp:
    """The top-level ASGI application: lifespan, then context and error middleware, then
    the scheduler API under its prefix and the Placement API everywhere else.

    Deliberately not a framework application object: every request pays for each layer,
    and these are the only layers there are.
    """

    def __init__(self, services: Services, placement: ASGIApp, scheduler: ASGIApp | None) -> None:
        self.services = services
        self.state = State()
        self.state.services = services
        self.state.placement = services.placement
        self.state.settings = services.settings
        self.state.health = services.health
        self.prefix = services.settings.server.scheduler_prefix.rstrip("/")
        self._scheduler = scheduler
        self._placement = placement
        self._openapi = dumps(openapi.document(services.settings.server.scheduler_prefix))
        self._endpoints = Endpoints(
            services.settings,
            services.db,
            services.metrics,
            services.placement.index,
            services.host_manager,
        )
        public = PUBLIC_PATHS | self._endpoints.public()
        # The error layer wraps authentication too: a token lookup can meet a database
        # that is down, and that is a 503 like any other request's.
        handler: ASGIApp = ErrorMiddleware(
            ContextMiddleware(
                self._dispatch,
                services.authenticator,
                is_public=lambda scope: scope["path"] in public,
            ),
            services.health,
        )
        cors = services.settings.cors
        if cors.allowed_origin:
            # Outside authentication: browsers send preflight requests without credentials.
            handler = CorsMiddleware(handler, cors)
        # An oversized or slow request is refused before any other work; outermost of all,
        # the observer, so refusals are counted too.
        self._handler = ObserveMiddleware(
            LimitsMiddleware(handler, services.settings.limits), services.metrics
        )

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path == OPENAPI_PATH and scope["method"] in ("GET", "HEAD"):
            set_route(scope, OPENAPI_PATH)
            await Response(self._openapi, media_type=JSON)(scope, receive, send)
            return
        if path in self._endpoints.paths():
            await self._endpoints(scope, receive, send)
            return
        if self._scheduler is not None and (
            path == self.prefix or path.startswith(self.prefix + "/")
        ):
            await self._scheduler(scope, receive, send)
        else:
            await self._placement(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.services.start()
                except Exception as exc:
                    LOG.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                # What start-up loaded (the host cache above all) lives as long as the
                # process: keep full collections from walking it (~250 ms a time at
                # 10,000 hosts, a latency spike for whichever request triggers one).
                gc.collect()
                gc.freeze()
                process.tune_allocator()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.services.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        scope["app"] = self
        await self._handler(scope, receive, send)


def create_app(services: Services) -> AllotmentApp:
    scheduler = None
    if services.host_manager is not None and services.scheduler is not None:
        scheduler = SchedulerAPI(
            services.host_manager, services.scheduler, services.settings.server.scheduler_prefix
        )
    return AllotmentApp(services, MicroversionMiddleware(build_router()), scheduler=scheduler)
