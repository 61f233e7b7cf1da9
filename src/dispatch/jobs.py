"""The job handlers this build knows: built-ins now, each domain's ``jobs.py`` as they land."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field

from dispatch.catalog import jobs as catalog_jobs
from dispatch.catalog.context import CatalogContext
from dispatch.config import Settings
from dispatch.gateway import jobs as gateway_jobs
from dispatch.gateway.context import GatewayContext
from dispatch.queue.registry import HandlerResult, JobContext, Registry
from dispatch.queue.worker import WorkerConfig
from dispatch.watch import jobs as watch_jobs


class SleepArgs(BaseModel):
    seconds: float = Field(ge=0, le=3600)


def _register_builtins(registry: Registry) -> None:
    @registry.register("queue.noop")
    async def noop(context: JobContext, args: dict[str, Any]) -> HandlerResult:
        """Does nothing: for smoke tests and the queue benchmark."""
        return None

    @registry.register("queue.sleep", args=SleepArgs)
    async def sleep(context: JobContext, args: SleepArgs) -> HandlerResult:
        """Sleeps: for drills (kill a worker mid-job and watch the job move on)."""
        await asyncio.sleep(args.seconds)
        return {"slept": args.seconds}


def build_registry(
    gateway: GatewayContext | None = None, catalog: CatalogContext | None = None
) -> Registry:
    """Every handler: the built-ins, and each domain's given the parts it needs."""
    registry = Registry()
    _register_builtins(registry)
    if gateway is not None:
        gateway_jobs.register(registry, gateway)
    if catalog is not None:
        catalog_jobs.register(registry, catalog)
        watch_jobs.register(registry, catalog)
    return registry


def worker_config(settings: Settings, **overrides: Any) -> WorkerConfig:
    values: dict[str, Any] = {
        "queues": tuple(settings.worker_queues),
        "concurrency": settings.worker_concurrency,
        "lease_seconds": settings.job_lease_seconds,
        "poll_interval": settings.worker_poll_interval_seconds,
        "shutdown_grace": settings.worker_shutdown_grace_seconds,
        "upkeep_interval": settings.queue_upkeep_interval_seconds,
        "retention": timedelta(days=settings.job_retention_days),
        "node_silent_after": timedelta(seconds=settings.node_silent_seconds),
    }
    values.update(overrides)
    return WorkerConfig(**values)
