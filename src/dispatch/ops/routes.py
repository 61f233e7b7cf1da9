"""Public probes, metrics and service information."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from dispatch import __version__
from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep
from dispatch.errors import ERROR_RESPONSES
from dispatch.gateway import resources as gateway_resources
from dispatch.gateway import tasks as gateway_tasks
from dispatch.ops import service
from dispatch.ops.schemas import HealthOut, ReadyOut, RootOut, ServiceInfoOut
from dispatch.queue import nodes
from dispatch.queue import service as queue_service
from dispatch.security.deps import Authorize, ReadKey, limit_anonymous, presented_key
from dispatch.security.scopes import Scope
from dispatch.telemetry.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])
_metrics_auth = Authorize(Scope.METRICS, group="metrics")


@router.get(
    "/",
    response_model=RootOut,
    dependencies=[Depends(limit_anonymous)],
    summary="Service banner (browsers are sent to the admin UI)",
)
async def root(request: Request, runtime: RuntimeDep) -> Response | RootOut:
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/ui/", status_code=303)
    return RootOut(
        service=runtime.settings.app_name,
        message="Dispatch API is online.",
        version=__version__,
        docs="/docs",
    )


@router.get("/health", response_model=HealthOut, summary="Liveness: the process answers")
async def health() -> HealthOut:
    return HealthOut()


@router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "A dependency is down"}},
    summary="Readiness: the database and Redis (when configured) answer",
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    checks = await service.readiness(runtime)
    ok = all(check.ok for check in checks.values())
    body = {
        "status": "ready" if ok else "not_ready",
        "checks": {name: check.as_json() for name, check in checks.items()},
    }
    return JSONResponse(body, status_code=200 if ok else 503)


# Load balancers often probe with HEAD; same handlers, kept out of the schema.
for _path, _endpoint in (("/", root), ("/health", health), ("/ready", ready)):
    router.add_api_route(
        _path, _endpoint, methods=["HEAD"], include_in_schema=False, response_model=None
    )


async def _metrics_access(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    key: Annotated[str | None, Depends(presented_key)],
) -> None:
    if not runtime.settings.metrics_public:
        await _metrics_auth(request, response, runtime, key)


@router.get(
    "/metrics",
    responses={200: {"content": {CONTENT_TYPE: {}}}, **ERROR_RESPONSES},
    dependencies=[Depends(_metrics_access)],
    summary="Prometheus metrics (scope: metrics, unless METRICS_PUBLIC=true)",
)
async def metrics(runtime: RuntimeDep) -> Response:
    async with runtime.database.session(write=False) as session:
        counts, oldest = await queue_service.depth(session)
        by_status, offered, in_use = await nodes.census(session)
        task_counts = await gateway_tasks.counts(session, owner=None)
        breakers = await gateway_resources.breaker_states(session)
    runtime.metrics.set_nodes(by_status, offered, in_use)
    runtime.metrics.set_gateway(task_counts, breakers)
    age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    runtime.metrics.set_queue_depth(counts, max(0.0, age))
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)


api_router = APIRouter(tags=["operations"], responses=ERROR_RESPONSES)


@api_router.get(
    "/system", response_model=ServiceInfoOut, summary="Service information (scope: read)"
)
async def system_info(runtime: RuntimeDep, _: ReadKey) -> ServiceInfoOut:
    return ServiceInfoOut.model_validate(service.service_info(runtime))
