"""``/api/v1/gateway/…``: the admin API for resources, endpoints, clients and tasks.

Reads need the ``read`` scope, changes ``write``; an admin key may do everything.
Every change drops this process's ingress cache at once (other processes within
``GATEWAY_CONFIG_CACHE_SECONDS``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import ERROR_RESPONSES, BadRequest, request_id_of
from dispatch.gateway import clients, endpoints, health, resources, settings_store, tasks
from dispatch.gateway.schemas import (
    BatchAction,
    BatchResult,
    CheckResult,
    ClientCreate,
    ClientOut,
    ClientUpdate,
    ClientWithToken,
    EndpointCreate,
    EndpointOut,
    EndpointRules,
    EndpointRulesOut,
    EndpointUpdate,
    HealthCheckOut,
    MappingTestIn,
    MappingTestOut,
    ResourceCreate,
    ResourceCreated,
    ResourceDetails,
    ResourceOut,
    ResourceUpdate,
    SecretOut,
    SmtpTestResult,
    TaskDetail,
    TaskOut,
    TaskPage,
    TaskStatus,
)
from dispatch.runtime import Runtime
from dispatch.security.deps import AdminKey, ReadKey, WriteKey

router = APIRouter(prefix="/gateway", tags=["gateway"], responses=ERROR_RESPONSES)


def reserved_paths(settings: Settings) -> tuple[str, ...]:
    """First path segments under /api/ that belong to the service (e.g. ``v1``)."""
    prefix = settings.api_v1_prefix.strip("/").split("/")
    own = prefix[1] if len(prefix) > 1 and prefix[0] == "api" else prefix[0]
    return tuple(dict.fromkeys((own.lower(), "v1")))


def _changed(runtime: Runtime) -> None:
    runtime.gateway.directory.invalidate()


# Resources ---------------------------------------------------------------------------------


@router.get("/resources", response_model=list[ResourceOut])
async def list_resources(session: SessionDep, _: ReadKey) -> list[ResourceOut]:
    return await resources.list_resources(session)


@router.post("/resources", response_model=ResourceCreated, status_code=status.HTTP_201_CREATED)
async def create_resource(
    data: ResourceCreate, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> ResourceCreated:
    """A new destination; its signing secret is in the answer this once."""
    resource, secret = await resources.create_resource(session, data, utcnow())
    _changed(runtime)
    out = resources.resource_out(resource, None)
    return ResourceCreated(**out.model_dump(), signing_secret_full=secret)


@router.get("/resources/{resource_id}", response_model=ResourceOut)
async def get_resource(resource_id: int, session: SessionDep, _: ReadKey) -> ResourceOut:
    return await resources.resource_view(session, resource_id)


@router.get("/resources/{resource_id}/details", response_model=ResourceDetails)
async def resource_details(resource_id: int, session: SessionDep, _: ReadKey) -> ResourceDetails:
    """Seed 002's short form: id, name and required params."""
    resource = await resources.get_resource(session, resource_id)
    return ResourceDetails(
        id=resource.id, name=resource.name, required_params=list(resource.required_params)
    )


@router.patch("/resources/{resource_id}", response_model=ResourceOut)
async def update_resource(
    resource_id: int,
    data: ResourceUpdate,
    session: SessionDep,
    runtime: RuntimeDep,
    _: WriteKey,
) -> ResourceOut:
    """Change some fields; a masked header value sent back unchanged keeps the secret."""
    await resources.update_resource(session, resource_id, data, utcnow())
    _changed(runtime)
    return await resources.resource_view(session, resource_id)


@router.delete("/resources/{resource_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_resource(
    resource_id: int, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> Response:
    await resources.delete_resource(session, resource_id)
    _changed(runtime)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/resources/{resource_id}/duplicate",
    response_model=ResourceCreated,
    status_code=status.HTTP_201_CREATED,
)
async def duplicate_resource(
    resource_id: int, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> ResourceCreated:
    """A copy, inactive and with health checks off, with a signing secret of its own."""
    copy, secret = await resources.duplicate_resource(session, resource_id, utcnow())
    _changed(runtime)
    out = resources.resource_out(copy, None)
    return ResourceCreated(**out.model_dump(), signing_secret_full=secret)


@router.post("/resources/{resource_id}/rotate-secret", response_model=SecretOut)
async def rotate_secret(
    resource_id: int, session: SessionDep, runtime: RuntimeDep, _: AdminKey
) -> SecretOut:
    """A new signing secret; the old one also signs until ``previous_secret_expires_at``."""
    grace = timedelta(hours=runtime.settings.gateway_secret_grace_hours)
    secret, expires = await resources.rotate_secret(session, resource_id, grace, utcnow())
    _changed(runtime)
    return SecretOut(signing_secret=secret, previous_secret_expires_at=expires)


@router.get("/resources/{resource_id}/secret", response_model=SecretOut)
async def reveal_secret(resource_id: int, session: SessionDep, _: AdminKey) -> SecretOut:
    """The whole signing secret, for configuring the receiver (admin keys only)."""
    resource = await resources.get_resource(session, resource_id)
    return SecretOut(
        signing_secret=resource.signing_secret,
        previous_secret_expires_at=resource.previous_secret_expires_at,
    )


@router.post("/resources/{resource_id}/check", response_model=CheckResult)
async def check_resource(
    resource_id: int, request: Request, runtime: RuntimeDep, _: WriteKey
) -> CheckResult:
    """Run the resource's health check now; the result feeds its breaker like any other."""
    result, state = await health.check_now(runtime.gateway, resource_id)
    return CheckResult(
        success=result.success,
        status_code=result.status_code,
        detail=result.detail,
        duration_ms=result.duration_ms,
        breaker_state=state,
        request_id=request_id_of(request.scope.get("state")),
    )


@router.get("/resources/{resource_id}/health", response_model=list[HealthCheckOut])
async def health_history(
    resource_id: int,
    session: SessionDep,
    _: ReadKey,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    since: datetime | None = None,
) -> list[HealthCheckOut]:
    """The resource's health checks, newest first (kept for GATEWAY_HEALTH_RETENTION_DAYS)."""
    await resources.get_resource(session, resource_id)
    return await health.history(session, resource_id, limit, since)


# Endpoints ---------------------------------------------------------------------------------


@router.get("/endpoints", response_model=list[EndpointOut])
async def list_endpoints(session: SessionDep, _: ReadKey) -> list[EndpointOut]:
    return await endpoints.list_endpoints(session)


@router.post("/endpoints", response_model=EndpointOut, status_code=status.HTTP_201_CREATED)
async def create_endpoint(
    data: EndpointCreate, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> EndpointOut:
    """A new endpoint at ``/api/{path}``; ``required_params`` defaults to ref and scope."""
    endpoint = await endpoints.create_endpoint(
        session, data, reserved_paths(runtime.settings), utcnow()
    )
    _changed(runtime)
    return await endpoints.endpoint_out(session, endpoint)


@router.get("/endpoints/{endpoint_id}", response_model=EndpointOut)
async def get_endpoint(endpoint_id: int, session: SessionDep, _: ReadKey) -> EndpointOut:
    return await endpoints.endpoint_out(session, await endpoints.get_endpoint(session, endpoint_id))


@router.patch("/endpoints/{endpoint_id}", response_model=EndpointOut)
async def update_endpoint(
    endpoint_id: int,
    data: EndpointUpdate,
    session: SessionDep,
    runtime: RuntimeDep,
    _: WriteKey,
) -> EndpointOut:
    """Change fields; ``resource_ids`` replaces the failover order, ``client_ids`` the clients."""
    endpoint = await endpoints.update_endpoint(
        session, endpoint_id, data, reserved_paths(runtime.settings), utcnow()
    )
    _changed(runtime)
    return await endpoints.endpoint_out(session, endpoint)


@router.delete("/endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(
    endpoint_id: int, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> Response:
    """Delete it with its links and rules; its tasks stay, keeping the path they came in on."""
    await endpoints.delete_endpoint(session, endpoint_id)
    _changed(runtime)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/endpoints/{endpoint_id}/duplicate",
    response_model=EndpointOut,
    status_code=status.HTTP_201_CREATED,
)
async def duplicate_endpoint(
    endpoint_id: int, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> EndpointOut:
    copy = await endpoints.duplicate_endpoint(
        session, endpoint_id, reserved_paths(runtime.settings), utcnow()
    )
    _changed(runtime)
    return await endpoints.endpoint_out(session, copy)


@router.get("/endpoints/{endpoint_id}/rules", response_model=EndpointRulesOut)
async def get_rules(endpoint_id: int, session: SessionDep, _: ReadKey) -> EndpointRulesOut:
    return await endpoints.get_rules(session, endpoint_id)


@router.put("/endpoints/{endpoint_id}/rules", response_model=EndpointRulesOut)
async def replace_rules(
    endpoint_id: int,
    data: EndpointRules,
    session: SessionDep,
    runtime: RuntimeDep,
    _: WriteKey,
) -> EndpointRulesOut:
    """Replace the mapping rules (per resource) and the endpoint's dev rules."""
    await endpoints.replace_rules(session, endpoint_id, data)
    await session.flush()
    _changed(runtime)
    return await endpoints.get_rules(session, endpoint_id)


@router.post("/endpoints/{endpoint_id}/mapping-test", response_model=MappingTestOut)
async def mapping_test(
    endpoint_id: int, data: MappingTestIn, session: SessionDep, _: ReadKey
) -> MappingTestOut:
    """What each resource would receive for a sample payload (stored or given rules)."""
    return await endpoints.try_mapping(session, endpoint_id, data, utcnow())


# Clients -----------------------------------------------------------------------------------


@router.get("/clients", response_model=list[ClientOut])
async def list_clients(session: SessionDep, _: ReadKey) -> list[ClientOut]:
    return await clients.list_clients(session)


@router.post("/clients", response_model=ClientWithToken, status_code=status.HTTP_201_CREATED)
async def create_client(
    data: ClientCreate, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> ClientWithToken:
    """A new client; its token is in the answer this once."""
    client, token = await clients.create_client(session, data, utcnow())
    _changed(runtime)
    await session.flush()
    out = await clients.client_out(session, client)
    return ClientWithToken(**out.model_dump(), token=token)


@router.get("/clients/{client_id}", response_model=ClientOut)
async def get_client(client_id: int, session: SessionDep, _: ReadKey) -> ClientOut:
    return await clients.client_out(session, await clients.get_client(session, client_id))


@router.patch("/clients/{client_id}", response_model=ClientOut)
async def update_client(
    client_id: int, data: ClientUpdate, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> ClientOut:
    client = await clients.update_client(session, client_id, data, utcnow())
    await session.flush()
    _changed(runtime)
    return await clients.client_out(session, client)


@router.post("/clients/{client_id}/rotate-token", response_model=ClientWithToken)
async def rotate_token(
    client_id: int, session: SessionDep, runtime: RuntimeDep, _: AdminKey
) -> ClientWithToken:
    """A new token, shown this once; the old one stops working."""
    client, token = await clients.rotate_token(session, client_id, utcnow())
    _changed(runtime)
    out = await clients.client_out(session, client)
    return ClientWithToken(**out.model_dump(), token=token)


@router.delete("/clients/{client_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_client(
    client_id: int, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> Response:
    await clients.delete_client(session, client_id)
    _changed(runtime)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Tasks -------------------------------------------------------------------------------------


@router.get("/tasks", response_model=TaskPage)
async def search_tasks(
    session: SessionDep,
    _: ReadKey,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    endpoint_id: int | None = None,
    client_id: int | None = None,
    resource_id: int | None = None,
    ref: Annotated[str | None, Query(max_length=200)] = None,
    scope: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=tasks.MAX_PAGE)] = 50,
) -> TaskPage:
    """Newest first; ``search`` matches payloads, names, path, ref and scope."""
    query = tasks.TaskQuery(
        status=status_,
        search=search,
        endpoint_id=endpoint_id,
        client_id=client_id,
        resource_id=resource_id,
        ref=ref,
        scope=scope,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return await tasks.search(session, query, owner=None)


@router.get("/tasks/{task_id}", response_model=TaskDetail)
async def get_task(task_id: int, session: SessionDep, _: ReadKey) -> TaskDetail:
    """The task with its source and target payloads and every delivery attempt."""
    return await tasks.detail(session, task_id, owner=None)


async def _act(session: SessionDep, runtime: Runtime, task_id: int, action: str) -> TaskOut:
    task = await tasks.act(session, task_id, action, None, runtime.settings.gateway_queue)
    assert task is not None
    return TaskOut.model_validate(task)


@router.post("/tasks/{task_id}/retry", response_model=TaskOut)
async def retry_task(
    task_id: int, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> TaskOut:
    """A failed or stopped task starts a new series of attempts."""
    return await _act(session, runtime, task_id, "retry")


@router.post("/tasks/{task_id}/stop", response_model=TaskOut)
async def stop_task(task_id: int, session: SessionDep, runtime: RuntimeDep, _: WriteKey) -> TaskOut:
    """A pending or held task is not delivered."""
    return await _act(session, runtime, task_id, "stop")


@router.post("/tasks/{task_id}/release", response_model=TaskOut)
async def release_task(
    task_id: int, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> TaskOut:
    """A held task (development mode) goes to delivery."""
    return await _act(session, runtime, task_id, "release")


@router.delete("/tasks/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_task(
    task_id: int, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> Response:
    """Delete a task and its attempts; refused (409) while it is processing."""
    await tasks.act(session, task_id, "delete", None, runtime.settings.gateway_queue)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/tasks/batch", response_model=BatchResult)
async def batch(
    data: BatchAction, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> BatchResult:
    """One action on many tasks; tasks it does not fit (e.g. processing) are listed, untouched."""
    done, refused = await tasks.act_many(
        session, data.task_ids, data.action, None, runtime.settings.gateway_queue
    )
    return BatchResult(done=done, refused=refused)


# Settings ----------------------------------------------------------------------------------


@router.get("/settings", response_model=settings_store.SettingsOut)
async def get_settings(session: SessionDep, _: AdminKey) -> settings_store.SettingsOut:
    """SMTP for alerts and task cleanup (the SMTP password is never shown)."""
    return settings_store.shown(await settings_store.load(session))


@router.put("/settings", response_model=settings_store.SettingsOut)
async def update_settings(
    data: settings_store.SettingsUpdate, session: SessionDep, _: AdminKey
) -> settings_store.SettingsOut:
    """Change some settings; a missing or masked password keeps the stored one."""
    return settings_store.shown(await settings_store.update(session, data, utcnow()))


@router.post("/settings/test-smtp", response_model=SmtpTestResult)
async def smtp_connection_test(session: SessionDep, _: AdminKey) -> SmtpTestResult:
    """Connect to the SMTP server with the stored settings and log in (seed: test_connection)."""
    smtp = await settings_store.load(session)
    try:
        worked, detail = await settings_store.connection_report(smtp)
    except settings_store.SmtpNotConfigured as exc:
        raise BadRequest(str(exc)) from exc
    return SmtpTestResult(success=worked, detail=detail)
