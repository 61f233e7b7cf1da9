"""``create_app(settings)``: the lifespan owns the engine, clients and background tasks."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI

from dispatch import __version__
from dispatch.background import every
from dispatch.catalog.context import CatalogContext
from dispatch.catalog.routes import router as catalog_router
from dispatch.config import Settings, load_settings
from dispatch.db import migrations
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.errors import install_error_handlers
from dispatch.fleet.routes import router as fleet_router
from dispatch.fleet.routes import seed_router as fleet_seed_router
from dispatch.gateway import ingress as gateway_ingress
from dispatch.gateway.context import GatewayContext
from dispatch.gateway.routes import reserved_paths
from dispatch.gateway.routes import router as gateway_router
from dispatch.jobs import build_registry, worker_config
from dispatch.ops.routes import api_router as ops_api_router
from dispatch.ops.routes import router as ops_router
from dispatch.queue.node_routes import router as nodes_router
from dispatch.queue.routes import router as jobs_router
from dispatch.queue.worker import Worker
from dispatch.runtime import Runtime
from dispatch.security import sessions
from dispatch.security.cors import EnvelopeCORSMiddleware
from dispatch.security.jwt_auth import JwtVerifier
from dispatch.security.ratelimit import RateLimiter
from dispatch.security.routes import router as keys_router
from dispatch.telemetry.events import Telemetry
from dispatch.telemetry.logging import configure_logging, resolve_format
from dispatch.telemetry.metrics import Metrics
from dispatch.telemetry.middleware import RequestContextMiddleware
from dispatch.watch import dev_routes as watch_dev
from dispatch.watch import stream as watch_stream
from dispatch.watch.integration_routes import router as watch_integrations_router
from dispatch.watch.live import router as watch_live_router
from dispatch.watch.outbound import router as watch_outbound_router
from dispatch.watch.releases import router as watch_releases_router
from dispatch.watch.routes import router as watch_router
from dispatch.watch.search import router as watch_search_router
from dispatch.web import docs as web_docs
from dispatch.web import routes as web_routes

if TYPE_CHECKING:
    import httpx
    from redis.asyncio import Redis

log = structlog.get_logger(__name__)

SESSION_PRUNE_SECONDS = 600.0
KEY_USAGE_FLUSH_SECONDS = 15.0
REQUEST_LOG_FLUSH_SECONDS = 5.0


def _redis_client(url: str) -> Redis:
    from redis.asyncio import Redis  # only deployments that use Redis pay for importing it

    return Redis.from_url(url)


def _telemetry_client(settings: Settings) -> httpx.AsyncClient:
    """The client that forwards telemetry; httpx (with click and rich, ~6 MB) loads only then."""
    import httpx

    return httpx.AsyncClient(
        timeout=settings.default_timeout_seconds,
        limits=httpx.Limits(max_connections=settings.max_connections),
        headers={"User-Agent": settings.user_agent},
    )


def build_runtime(settings: Settings, metrics: Metrics) -> Runtime:
    database = Database(settings)
    gateway = GatewayContext.build(settings, database, metrics)
    endpoint = str(settings.telemetry_endpoint) if settings.telemetry_endpoint else None
    http = _telemetry_client(settings) if endpoint else None
    redis = _redis_client(settings.redis_url) if settings.redis_url else None
    per_minute = settings.request_rate_per_minute
    limiter = RateLimiter(
        settings,
        budgets={
            "api": per_minute,
            "public": per_minute,
            "metrics": per_minute,
            "ui": per_minute,
            "login": settings.login_rate_per_minute,
            "nodes": settings.node_request_rate_per_minute,
            "node_claim": settings.node_claim_rate_per_minute,
            "gateway": settings.gateway_ingest_rate_per_minute,
            "watch_rules": settings.watch_rate_per_minute,
            "stream_events": settings.stream_rate_per_minute,
            "search": settings.search_rate_per_minute,
            "discogs": settings.discogs_rate_per_minute,
            "auth_endpoints": settings.auth_endpoints_rate_per_minute,
        },
        redis=redis,
    )
    limiter.on_reject = lambda group: metrics.rate_limited.labels(group).inc()
    telemetry = Telemetry(
        endpoint,
        http,
        metrics,
        capacity=settings.telemetry_buffer_size,
        batch_size=settings.telemetry_batch_size,
        flush_interval=settings.telemetry_flush_interval_seconds,
    )
    catalog = CatalogContext(settings, database, metrics, telemetry)
    return Runtime(
        settings=settings,
        database=database,
        limiter=limiter,
        telemetry=telemetry,
        metrics=metrics,
        signer=sessions.SessionSigner(
            sessions.session_secret(settings), settings.session_max_age_seconds
        ),
        http=http,
        gateway=gateway,
        catalog=catalog,
        redis=redis,
        jwt=JwtVerifier(settings) if settings.auth_jwks_location else None,
        registry=build_registry(gateway, catalog),
    )


async def _prune_sessions(runtime: Runtime) -> None:
    async with runtime.database.session() as session:
        await sessions.prune_expired(session, utcnow())


def _start_worker(runtime: Runtime, stop: asyncio.Event) -> asyncio.Task[None]:
    """The embedded worker: the same loop `dispatch worker` runs, inside the API process."""
    config = worker_config(runtime.settings)
    worker = Worker(runtime.database, runtime.registry, config, runtime.metrics)
    runtime.worker = worker
    return asyncio.create_task(worker.run(stop), name="queue.worker")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    runtime = build_runtime(settings, app.state.metrics)
    try:
        await migrations.prepare(runtime.database, settings)
    except BaseException:
        await runtime.close()
        raise
    app.state.runtime = runtime
    supervisor = runtime.supervisor
    if runtime.telemetry.enabled:
        supervisor.start("telemetry", runtime.telemetry.run)
    supervisor.start(
        "sessions.prune", every(SESSION_PRUNE_SECONDS, lambda: _prune_sessions(runtime))
    )
    supervisor.start(
        "keys.usage",
        every(KEY_USAGE_FLUSH_SECONDS, lambda: runtime.key_usage.flush(runtime.database)),
    )
    supervisor.start(
        "catalog.requests", every(REQUEST_LOG_FLUSH_SECONDS, runtime.catalog.flush_requests)
    )
    supervisor.start(
        "watch.relay", lambda: watch_stream.relay(settings, runtime.database, runtime.redis)
    )
    stop_worker = asyncio.Event()
    worker_task = _start_worker(runtime, stop_worker) if settings.worker_enabled else None
    runtime.telemetry.emit("app.startup", version=__version__, database=settings.database_kind)
    log.info("app.started", version=__version__, database=settings.database_kind)
    try:
        yield
    finally:
        runtime.telemetry.emit("app.shutdown")
        stop_worker.set()
        if worker_task is not None:
            await worker_task  # finishes in-flight jobs within the grace, releases the rest
        await supervisor.stop()
        await runtime.key_usage.flush(runtime.database)
        await runtime.telemetry.flush()
        await runtime.close()
        log.info("app.stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; nothing connects until the lifespan starts."""
    settings = settings or load_settings()
    metrics = Metrics()
    metrics.set_build_info(__version__, settings.database_kind)
    app = FastAPI(
        title=settings.app_name,
        version=__version__,
        description="Catalogue, watch, gateway and fleet on one durable task queue.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    metrics.watch_pool(
        lambda: app.state.runtime.database.pool_status() if hasattr(app.state, "runtime") else {}
    )
    install_error_handlers(app)
    cors_options: dict[str, Any] = {
        "allow_origins": settings.allowed_origins,
        "allow_credentials": settings.cors_credentials_effective,
        "allow_methods": ["*"],
        "allow_headers": ["*"],
        "expose_headers": [
            "X-Request-ID",
            "Retry-After",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
        ],
    }
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_request_body_bytes,
        usage_prefix=settings.api_v1_prefix + "/",
        log_level=settings.log_level,
        cors=lambda inner: EnvelopeCORSMiddleware(inner, **cors_options),
    )
    app.include_router(ops_router)
    app.include_router(ops_api_router, prefix=settings.api_v1_prefix)
    # Routes are matched in order: the ones a thousand rescue nodes poll come early (no
    # other route matches their paths, so the order changes nothing else).
    app.include_router(fleet_router, prefix=settings.api_v1_prefix)
    app.include_router(fleet_seed_router)
    app.include_router(keys_router, prefix=settings.api_v1_prefix)
    app.include_router(jobs_router, prefix=settings.api_v1_prefix)
    app.include_router(nodes_router, prefix=settings.api_v1_prefix)
    app.include_router(gateway_router, prefix=settings.api_v1_prefix)
    app.include_router(catalog_router, prefix=settings.api_v1_prefix)
    app.include_router(watch_router, prefix=settings.api_v1_prefix)
    app.include_router(watch_live_router, prefix=settings.api_v1_prefix)
    app.include_router(watch_search_router, prefix=settings.api_v1_prefix)
    app.include_router(watch_releases_router, prefix=settings.api_v1_prefix)
    app.include_router(watch_outbound_router, prefix=settings.api_v1_prefix)
    app.include_router(watch_integrations_router, prefix=settings.api_v1_prefix)
    if settings.environment in watch_dev.DEV_ENVIRONMENTS:
        app.include_router(watch_dev.router, prefix=settings.api_v1_prefix)
    web_docs.install(app)
    web_routes.install(app)
    gateway_ingress.install(app, reserved_paths(settings))
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving."""
    settings = load_settings()
    configure_logging(settings.log_level, resolve_format(settings.log_format, settings.environment))
    app = create_app(settings)
    # Modules, classes and the app live as long as the server process: move them out of the
    # collector's reach so full collections during requests stop rescanning them.
    gc.collect()
    gc.freeze()
    return app
