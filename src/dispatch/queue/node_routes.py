"""``/api/v1/nodes``: remote nodes register, claim, heart-beat and report over HTTP.

A node acts with its own token (``X-Node-Token`` or ``Authorization: Bearer``),
valid only for its own routes; an admin key may act for any node. Registering
needs a key with the ``nodes`` scope; listing needs ``read``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import APIKeyHeader

from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import ERROR_RESPONSES, Conflict, Forbidden, Unauthorized, ValidationFailed
from dispatch.models import Job, Node
from dispatch.queue import nodes, service
from dispatch.queue.errors import PermanentFailure, RetryAfter
from dispatch.queue.node_schemas import (
    ClaimIn,
    ClaimOut,
    CompleteIn,
    FailIn,
    HeartbeatIn,
    HeartbeatOut,
    LeasedJob,
    LeaseIn,
    NodeList,
    NodeOut,
    NodeRegister,
    NodeRegistered,
    NodeUpdate,
    OutcomeOut,
    ProgressIn,
)
from dispatch.queue.policy import RetryPolicy
from dispatch.runtime import Runtime
from dispatch.security.deps import Authorize, ReadKey, presented_key
from dispatch.security.scopes import Scope

router = APIRouter(prefix="/nodes", tags=["nodes"], responses=ERROR_RESPONSES)

_node_token = APIKeyHeader(
    name="X-Node-Token",
    scheme_name="NodeToken",
    auto_error=False,
    description="A remote node's token, from its registration",
)
_register_key = Authorize(Scope.NODES)
_write_key = Authorize(Scope.WRITE)
_admin_key = Authorize(Scope.ADMIN, group="nodes")


def heartbeat_seconds(runtime: Runtime) -> float:
    """A third of the lease, and often enough to be seen before the node counts as silent."""
    settings = runtime.settings
    return round(min(settings.node_lease_seconds, settings.node_silent_seconds) / 3, 1)


def _timing(runtime: Runtime) -> dict[str, float]:
    return {
        "lease_seconds": runtime.settings.node_lease_seconds,
        "heartbeat_seconds": heartbeat_seconds(runtime),
    }


def _out(node: Node, load: nodes.Load) -> NodeOut:
    return NodeOut(
        id=node.id,
        name=node.name,
        status="active" if node.status == "active" else "offline",
        enabled=node.enabled,
        capacity=node.capacity,
        capacity_used=load.capacity_used,
        in_flight=load.in_flight,
        max_in_flight=node.max_in_flight,
        labels=node.labels,
        queues=node.queues,
        version=node.version,
        token_prefix=node.token_prefix,
        registered_at=node.registered_at,
        last_seen_at=node.last_seen_at,
    )


def _check_queues(runtime: Runtime, queues: list[str]) -> None:
    allowed = runtime.settings.node_queues
    refused = [queue for queue in queues if queue not in allowed]
    if refused:
        raise ValidationFailed(
            f"nodes may only serve the queues in NODE_QUEUES ({', '.join(allowed)})",
            details={"refused": refused, "allowed": allowed},
        )


async def node_caller(
    node_id: str,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    node_token: Annotated[str | None, Depends(_node_token)],
    key: Annotated[str | None, Depends(presented_key)],
) -> str:
    """The node ``node_id`` itself (by its token), or an admin key acting for it."""
    token = (node_token or "").strip() or key
    if token and token.startswith(nodes.TOKEN_PREFIX):
        async with runtime.database.session(write=False) as session:
            node = await nodes.authenticate(session, token)
        identity = (
            f"node:{node.id}" if node else "ip:" + (request.client.host if request.client else "?")
        )
        state = await runtime.limiter.hit("nodes", identity)
        if state is not None:
            response.headers.update(state.headers())
        if node is None:
            raise Unauthorized("Unknown node token")
        if node.id != node_id:
            raise Forbidden("This token belongs to another node")
        return node_id
    await _admin_key(request, response, runtime, key)
    return node_id


NodeCaller = Annotated[str, Depends(node_caller)]


@router.post(
    "",
    response_model=NodeRegistered,
    status_code=status.HTTP_201_CREATED,
    summary="Register a remote node; its token is shown once (scope: nodes)",
)
async def register_node(
    body: NodeRegister,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    session: SessionDep,
    key: Annotated[str | None, Depends(presented_key)],
) -> NodeRegistered:
    await _register_key(request, response, runtime, key)
    settings = runtime.settings
    general = [queue for queue in settings.node_queues if queue != settings.rescue_queue]
    queues = body.queues if body.queues is not None else general  # rescue nodes: /rescue/nodes
    _check_queues(runtime, queues)
    spec = nodes.Registration(
        name=body.name,
        capacity=body.capacity,
        labels=body.labels,
        queues=queues,
        max_in_flight=body.max_in_flight,
        version=body.version,
    )
    node, token = await nodes.register(session, spec)
    out = _out(node, nodes.Load())
    return NodeRegistered(**out.model_dump(), token=token, **_timing(runtime))


@router.get("", response_model=NodeList, summary="Remote nodes with what each holds (scope: read)")
async def list_nodes(session: SessionDep, _: ReadKey) -> NodeList:
    return NodeList(items=[_out(node, load) for node, load in await nodes.list_nodes(session)])


@router.get(
    "/{node_id}", response_model=NodeOut, summary="One node with what it holds (scope: read)"
)
async def get_node(node_id: str, session: SessionDep, _: ReadKey) -> NodeOut:
    node = await nodes.get_node(session, node_id)
    return _out(node, (await nodes.loads(session, [node_id]))[node_id])


@router.patch(
    "/{node_id}", response_model=NodeOut, summary="Enable, disable or resize a node (scope: write)"
)
async def update_node(
    node_id: str,
    body: NodeUpdate,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    session: SessionDep,
    key: Annotated[str | None, Depends(presented_key)],
) -> NodeOut:
    await _write_key(request, response, runtime, key)
    if body.queues is not None:
        _check_queues(runtime, body.queues)
    changes = nodes.NodeChanges(**body.model_dump())
    node = await nodes.update_node(session, node_id, changes)
    await session.flush()
    return _out(node, (await nodes.loads(session, [node_id]))[node_id])


@router.delete(
    "/{node_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Deregister a node; the jobs it held go back to the queue (the node, or admin)",
)
async def deregister_node(node_id: NodeCaller, session: SessionDep) -> Response:
    await nodes.deregister(session, node_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{node_id}/claim",
    response_model=ClaimOut,
    responses={204: {"description": "No work fits this node now; ask again after Retry-After"}},
    summary="Lease jobs that fit the node's free capacity, slots and labels",
)
async def claim(node_id: NodeCaller, body: ClaimIn, runtime: RuntimeDep) -> Response | ClaimOut:
    state = await runtime.limiter.hit("node_claim", f"node:{node_id}")
    leased = await nodes.claim(
        runtime.database,
        node_id,
        limit=body.limit,
        lease_seconds=runtime.settings.node_lease_seconds,
        capacity=body.capacity,
    )
    if not leased:
        retry = state.reset_after if state is not None and state.remaining == 0 else 0
        seconds = max(retry, round(runtime.settings.worker_poll_interval_seconds * 5) or 1)
        return Response(
            status_code=status.HTTP_204_NO_CONTENT, headers={"Retry-After": str(seconds)}
        )
    jobs = [
        LeasedJob(
            id=job.id,
            kind=job.kind,
            queue=job.queue,
            args=job.args,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            required_capacity=job.required_capacity,
            lease_token=job.lease_token,
            lease_expires_at=job.lease_expires_at,
            deadline_at=job.deadline_at,
        )
        for job in leased
    ]
    return ClaimOut(jobs=jobs, **_timing(runtime))


@router.post(
    "/{node_id}/heartbeat",
    response_model=HeartbeatOut,
    summary="Extend all of the node's leases; lists jobs cancelled or no longer its own",
)
async def heartbeat(node_id: NodeCaller, body: HeartbeatIn, runtime: RuntimeDep) -> HeartbeatOut:
    reports = [nodes.Report(r.job_id, r.lease_token, r.progress) for r in body.running]
    beat = await nodes.heartbeat(
        runtime.database,
        node_id,
        lease_seconds=runtime.settings.node_lease_seconds,
        capacity=body.capacity,
        running=reports,
    )
    return HeartbeatOut(
        extended=beat.extended,
        cancelled=beat.cancelled,
        lost=beat.lost,
        lease_expires_at=beat.lease_expires_at,
        **_timing(runtime),
    )


def _lease_lost(job_id: int) -> Conflict:
    return Conflict(
        f"job {job_id} is no longer leased with this token; drop its work",
        code="lease_lost",
        details={"job_id": job_id},
    )


@router.post(
    "/{node_id}/jobs/{job_id}/progress",
    response_model=OutcomeOut,
    summary="Record progress (and extend this job's lease)",
)
async def progress(
    node_id: NodeCaller, job_id: int, body: ProgressIn, runtime: RuntimeDep
) -> OutcomeOut:
    beat = await service.heartbeat(
        runtime.database,
        job_id,
        body.lease_token,
        lease_seconds=runtime.settings.node_lease_seconds,
        progress=body.progress,
    )
    if not beat.alive:
        raise _lease_lost(job_id)
    return OutcomeOut(
        job_id=job_id, state="cancel_requested" if beat.cancel_requested else "running"
    )


@router.post(
    "/{node_id}/jobs/{job_id}/complete", response_model=OutcomeOut, summary="The job succeeded"
)
async def complete(
    node_id: NodeCaller, job_id: int, body: CompleteIn, runtime: RuntimeDep
) -> OutcomeOut:
    if not await service.complete(runtime.database, job_id, body.lease_token, body.result):
        raise _lease_lost(job_id)
    return OutcomeOut(job_id=job_id, state="succeeded")


async def _leased(runtime: Runtime, job_id: int, token: str) -> Job:
    async with runtime.database.session(write=False) as session:
        job = await session.get(Job, job_id)
    if job is None or job.lease_token != token or job.state != "running":
        raise _lease_lost(job_id)
    return job


@router.post(
    "/{node_id}/jobs/{job_id}/fail",
    response_model=OutcomeOut,
    summary="The attempt failed: retried with backoff (or after retry_after_seconds) or dead",
)
async def fail(node_id: NodeCaller, job_id: int, body: FailIn, runtime: RuntimeDep) -> OutcomeOut:
    job = await _leased(runtime, job_id, body.lease_token)
    handler = runtime.registry.get(job.kind)
    policy = handler.policy if handler is not None else RetryPolicy()
    error: Exception
    if body.permanent:
        error = PermanentFailure(body.error)
    elif body.retry_after_seconds is not None:
        error = RetryAfter(body.retry_after_seconds, body.error)
    else:
        error = RuntimeError(body.error)
    decision = policy.decide(job.attempt, job.max_attempts, error)
    state = await service.fail(runtime.database, job_id, body.lease_token, body.error, decision)
    if state is None:
        raise _lease_lost(job_id)
    run_at: datetime | None = None
    if decision.retry:
        async with runtime.database.session(write=False) as session:
            run_at = (await service.get_job(session, job_id)).run_at
    return OutcomeOut(job_id=job_id, state=state, run_at=run_at)


@router.post(
    "/{node_id}/jobs/{job_id}/release",
    response_model=OutcomeOut,
    summary="Give a job back unfinished (the node is shutting down); the attempt does not count",
)
async def release(
    node_id: NodeCaller, job_id: int, body: LeaseIn, runtime: RuntimeDep
) -> OutcomeOut:
    if not await service.release(runtime.database, job_id, body.lease_token):
        raise _lease_lost(job_id)
    return OutcomeOut(job_id=job_id, state="available")
