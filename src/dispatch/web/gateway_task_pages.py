"""Gateway UI pages shared by admins and clients: dashboard, tasks, task detail, documentation.

A client session passes its own id to every service call as the owner, so it sees and
acts on its own tasks only (another client's task is 'not found'); an admin passes None.
Seed 002's paths (``/tasks``, ``/task/{id}``) redirect here; ``/documentation`` and
``/openapi-user.json`` keep the seed's paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from dispatch import __version__
from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import BadRequest, Conflict, Unauthorized
from dispatch.gateway import dashboard, openapi, resources, tasks
from dispatch.models.gateway import TASK_STATUSES
from dispatch.web.auth import CsrfViewerDep, OptionalViewerDep, UiUser, ViewerDep
from dispatch.web.pages import page

router = APIRouter(include_in_schema=False)

Action = Literal["retry", "stop", "release", "delete"]
PAGE_SIZE = 50
RECENT = 10
MAX_BATCH = 1000
# Seed 002 called a held task "dev"; its links and bookmarks still say so.
_STATUS_ALIASES = {"dev": "held"}


def _int_or_none(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


def _moment(name: str, value: str) -> datetime | None:
    """A time from the filter form (``datetime-local`` gives no zone: it is UTC)."""
    if not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise BadRequest(f"{name} must be a date and time, e.g. 2025-01-31T14:00") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass(frozen=True, slots=True)
class TaskFilters:
    """The task list's filters as the form submitted them, and the query they make."""

    search: str = ""
    status: str = ""
    endpoint_id: int | None = None
    client_id: int | None = None
    since: str = ""
    until: str = ""
    cursor: str | None = None
    limit: int = PAGE_SIZE

    def query(self, user: UiUser) -> tasks.TaskQuery:
        return tasks.TaskQuery(
            status=self.status or None,
            search=self.search.strip() or None,
            endpoint_id=self.endpoint_id,
            client_id=self.client_id if user.is_admin else None,
            since=_moment("since", self.since),
            until=_moment("until", self.until),
            cursor=self.cursor,
            limit=self.limit,
        )

    def query_string(self, cursor: str | None = None) -> str:
        """These filters (and ``cursor``) as a URL query string, empty values left out."""
        values = {
            "search": self.search,
            "status": self.status,
            "endpoint_id": self.endpoint_id,
            "client_id": self.client_id,
            "since": self.since,
            "until": self.until,
            "limit": self.limit if self.limit != PAGE_SIZE else None,
            "cursor": cursor,
        }
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})


async def task_filters(
    search: Annotated[str, Query(max_length=200)] = "",
    status: Annotated[str, Query(max_length=16)] = "",
    endpoint_id: Annotated[str, Query(max_length=20)] = "",
    client_id: Annotated[str, Query(max_length=20)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=tasks.MAX_PAGE)] = PAGE_SIZE,
) -> TaskFilters:
    status = _STATUS_ALIASES.get(status, status)
    return TaskFilters(
        search=search,
        status=status if status in TASK_STATUSES else "",
        endpoint_id=_int_or_none(endpoint_id),
        client_id=_int_or_none(client_id),
        since=since,
        until=until,
        cursor=cursor or None,
        limit=limit,
    )


FiltersDep = Annotated[TaskFilters, Depends(task_filters)]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    action: str
    done: list[int] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def allowed_actions(status: str) -> list[str]:
    """The actions a task in this status accepts (the buttons the UI shows)."""
    return [action for action, statuses in tasks.ACTIONS.items() if status in statuses]


# Dashboard ---------------------------------------------------------------------------------


@router.get("/ui/gateway", response_class=HTMLResponse)
async def dashboard_page(request: Request, session: SessionDep, user: ViewerDep) -> Response:
    owner = user.client_id
    recent = await tasks.search(session, tasks.TaskQuery(limit=RECENT), owner)
    context: dict[str, Any] = {
        "user": user,
        "counts": await tasks.counts(session, owner),
        "recent": recent.items,
    }
    if user.is_admin:
        minutes = await dashboard.deliveries_per_minute(session, utcnow())
        context |= {
            "deliveries": minutes,
            "delivery_peak": max((m.count for m in minutes), default=0),
            "delivery_total": sum(m.count for m in minutes),
            "resources": await resources.list_resources(session),
        }
    return page(request, "gateway/dashboard.html", context)


# Task list and batch actions ---------------------------------------------------------------


async def _tasks_page(
    request: Request,
    session: SessionDep,
    user: UiUser,
    filters: TaskFilters,
    outcome: BatchOutcome | None = None,
) -> HTMLResponse:
    found = await tasks.search(session, filters.query(user), user.client_id)
    context = {
        "user": user,
        "tasks": found.items,
        "filters": filters,
        "statuses": TASK_STATUSES,
        "endpoints": await dashboard.endpoint_choices(session, user.client_id),
        "clients": await dashboard.client_choices(session) if user.is_admin else [],
        "actions": list(tasks.ACTIONS),
        "query_string": filters.query_string(filters.cursor),
        "older": filters.query_string(found.next_cursor) if found.next_cursor else None,
        "outcome": outcome,
    }
    return page(request, "gateway/tasks.html", context)


@router.get("/ui/gateway/tasks", response_class=HTMLResponse)
async def tasks_page(
    request: Request, session: SessionDep, user: ViewerDep, filters: FiltersDep
) -> Response:
    return await _tasks_page(request, session, user, filters)


@router.post("/ui/gateway/tasks/batch", response_class=HTMLResponse)
async def batch_action(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: CsrfViewerDep,
    filters: FiltersDep,
    action: Annotated[Action, Form()],
    task_ids: Annotated[list[int] | None, Form()] = None,
) -> Response:
    """One action on the ticked tasks; the page lists what was done and what was refused."""
    if not task_ids:
        outcome = BatchOutcome(action, error="Tick at least one task first.")
    elif len(task_ids) > MAX_BATCH:
        outcome = BatchOutcome(action, error=f"At most {MAX_BATCH} tasks at a time.")
    else:
        queue = runtime.settings.gateway_queue
        done, refused = await tasks.act_many(session, task_ids, action, user.client_id, queue)
        outcome = BatchOutcome(action, done, refused)
    return await _tasks_page(request, session, user, filters, outcome)


# Task detail and actions -------------------------------------------------------------------


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _pretty_body(body: str | None) -> str:
    """A response body, re-indented when it is JSON."""
    if not body:
        return ""
    try:
        return _pretty(json.loads(body))
    except ValueError:
        return body


async def _task_page(
    request: Request,
    session: SessionDep,
    user: UiUser,
    task_id: int,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    task = await tasks.detail(session, task_id, user.client_id)
    context = {
        "user": user,
        "task": task,
        "source": _pretty(task.source_payload),
        "target": _pretty(task.target_payload) if task.target_payload is not None else None,
        "bodies": {a.id: _pretty_body(a.response_body) for a in task.attempt_log},
        "actions": allowed_actions(task.status),
        "error": error,
    }
    return page(request, "gateway/task.html", context, status)


@router.get("/ui/gateway/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(
    request: Request, task_id: int, session: SessionDep, user: ViewerDep
) -> Response:
    return await _task_page(request, session, user, task_id)


@router.post("/ui/gateway/tasks/{task_id}/{action}", response_class=HTMLResponse)
async def task_action(
    request: Request,
    task_id: int,
    action: Action,
    session: SessionDep,
    runtime: RuntimeDep,
    user: CsrfViewerDep,
) -> Response:
    """Retry, stop, release or delete one task; a status that does not allow it is a 409 page."""
    try:
        # A savepoint: a refused action must leave nothing behind (retry enqueues first).
        async with session.begin_nested():
            await tasks.act(
                session, task_id, action, user.client_id, runtime.settings.gateway_queue
            )
    except Conflict as exc:
        return await _task_page(request, session, user, task_id, exc.message, exc.status)
    if action == "delete":
        return RedirectResponse("/ui/gateway/tasks", status_code=303)
    return RedirectResponse(f"/ui/gateway/tasks/{task_id}", status_code=303)


# Documentation -----------------------------------------------------------------------------


@router.get("/documentation", response_class=HTMLResponse)
async def documentation_page(request: Request, user: ViewerDep) -> Response:
    """Swagger UI (local assets) on the caller's own OpenAPI document."""
    context = {"user": user, "scheme": openapi.SECURITY_SCHEME}
    return page(request, "gateway/documentation.html", context)


@router.get("/openapi-user.json")
async def user_openapi(
    session: SessionDep, runtime: RuntimeDep, user: OptionalViewerDep
) -> JSONResponse:
    """The endpoints this session may call, built now (a new endpoint shows at once)."""
    if user is None:
        raise Unauthorized("Log in to read your API documentation")
    endpoints = await openapi.endpoints_for(session, user.client_id)
    document = openapi.build_document(endpoints, runtime.settings.app_name, __version__)
    return JSONResponse(document, headers={"Cache-Control": "no-store"})


# Seed 002's paths --------------------------------------------------------------------------


@router.get("/tasks")
async def seed_tasks_redirect(request: Request) -> Response:
    query = request.url.query
    return RedirectResponse("/ui/gateway/tasks" + (f"?{query}" if query else ""), status_code=307)


@router.get("/task/{task_id}")
async def seed_task_redirect(task_id: int) -> Response:
    return RedirectResponse(f"/ui/gateway/tasks/{task_id}", status_code=307)
