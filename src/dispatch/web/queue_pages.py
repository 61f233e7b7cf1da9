"""Admin UI pages for the queue: jobs (filters, detail, retry, cancel), workers and nodes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from dispatch.deps import RuntimeDep, SessionDep
from dispatch.models.job import JOB_STATES
from dispatch.queue import nodes, service, workers
from dispatch.web.auth import CsrfUserDep, UiUserDep
from dispatch.web.pages import page

router = APIRouter(prefix="/ui", include_in_schema=False)
PAGE_SIZE = 50


@router.get("/jobs", response_class=HTMLResponse)
async def jobs_page(
    request: Request,
    session: SessionDep,
    user: UiUserDep,
    state: Annotated[str | None, Query(max_length=16)] = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
    queue: Annotated[str | None, Query(max_length=64)] = None,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    filters = service.JobFilter(
        states=[state] if state in JOB_STATES else [],
        kinds=[kind] if kind else [],
        queues=[queue] if queue else [],
    )
    jobs, next_before = await service.list_jobs(session, filters, before_id=before, limit=PAGE_SIZE)
    context = {
        "user": user,
        "jobs": jobs,
        "states": JOB_STATES,
        "filters": {"state": state or "", "kind": kind or "", "queue": queue or ""},
        "next_before": next_before,
    }
    return page(request, "jobs.html", context)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, job_id: int, session: SessionDep, user: UiUserDep) -> Response:
    job = await service.get_job(session, job_id)
    attempts = await service.attempts_of(session, job_id)
    return page(request, "job.html", {"user": user, "job": job, "attempts": attempts})


@router.post("/jobs/{job_id}/retry")
async def retry_job(job_id: int, session: SessionDep, user: CsrfUserDep) -> Response:
    await service.retry_now(session, job_id)
    return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: int, session: SessionDep, user: CsrfUserDep) -> Response:
    await service.cancel(session, job_id)
    return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)


@router.get("/workers", response_class=HTMLResponse)
async def workers_page(request: Request, session: SessionDep, user: UiUserDep) -> Response:
    alive = await workers.list_alive(session)
    return page(request, "workers.html", {"user": user, "workers": alive})


@router.get("/nodes", response_class=HTMLResponse)
async def nodes_page(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: UiUserDep
) -> Response:
    context = {
        "user": user,
        "nodes": await nodes.list_nodes(session),
        "silent_seconds": runtime.settings.node_silent_seconds,
    }
    return page(request, "nodes.html", context)


async def _set_enabled(session: SessionDep, node_id: str, enabled: bool) -> Response:
    await nodes.update_node(session, node_id, nodes.NodeChanges(enabled=enabled))
    return RedirectResponse("/ui/nodes", status_code=303)


@router.post("/nodes/{node_id}/disable")
async def disable_node(node_id: str, session: SessionDep, user: CsrfUserDep) -> Response:
    """A disabled node keeps what it holds but is given no new work."""
    return await _set_enabled(session, node_id, False)


@router.post("/nodes/{node_id}/enable")
async def enable_node(node_id: str, session: SessionDep, user: CsrfUserDep) -> Response:
    return await _set_enabled(session, node_id, True)
